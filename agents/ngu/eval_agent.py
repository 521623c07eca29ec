"""Replays a trained NGU agent and records it: by default the exploitative policy (j = 0,
β = 0), or any of the N policies with --policy_index.

python -m agents.ngu.eval_agent --environment_name=MontezumaRevenge
python -m agents.ngu.eval_agent --environment_name=MontezumaRevenge --policy_index=31
"""

from agents.ngu.agent import NguConfig, build_network, evaluation_actor
from experiment.command_line import run_cli
from experiment.evaluate_checkpoint import FLAGS, EvalScript


def policy_actor(state, config: NguConfig, network, device):
    """Plays --policy_index."""
    return evaluation_actor(
        network, config, FLAGS.eval_epsilon, FLAGS.policy_index, FLAGS.seed, device
    )


POLICY_INDEX_HELP = (
    "Which of the N policies to play: 0 is the exploitative one (β = 0, the largest γ), "
    "N − 1 the most exploratory."
)
SCRIPT = EvalScript("ngu", NguConfig, build_network, policy_actor, (0, POLICY_INDEX_HELP))

if __name__ == "__main__":
    run_cli(SCRIPT.main)

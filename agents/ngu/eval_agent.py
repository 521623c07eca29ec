"""Replays a trained NGU agent and records it: by default the exploitative policy (j = 0,
β = 0), or any of the N policies with --policy_index.

python -m agents.ngu.eval_agent --environment_name=MontezumaRevenge
python -m agents.ngu.eval_agent --environment_name=MontezumaRevenge --policy_index=31
"""

from __future__ import annotations

from absl import flags

from agents.ngu.agent import NguConfig, build_network, evaluation_actor
from checkpoint import load_module_state
from evaluation import config_from_checkpoint, define_eval_flags, run_evaluation
from experiment import resolve_device, run_cli

FLAGS = flags.FLAGS
define_eval_flags()
flags.DEFINE_integer(
    "policy_index",
    0,
    "Which of the N policies to play: 0 is the exploitative one (β = 0, the largest γ), "
    "N − 1 the most exploratory.",
    0,
)


def make_actor(state, env):
    config: NguConfig = config_from_checkpoint(NguConfig, state)
    device = resolve_device("auto")
    network = build_network(config, env.observation_shape, env.num_actions).to(device)
    load_module_state(network, state["learner"]["network"], "network")
    network.eval()
    return evaluation_actor(
        network, config, FLAGS.eval_epsilon, FLAGS.policy_index, FLAGS.seed, device
    )


def main() -> None:
    run_evaluation("ngu", make_actor)


if __name__ == "__main__":
    run_cli(main)

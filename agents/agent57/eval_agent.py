"""Replays a trained Agent57 agent and records it. By default it plays the arm that the
evaluator's bandit, as saved in the checkpoint, rates best; --policy_index fixes the arm.

python -m agents.agent57.eval_agent --environment_name=Pitfall
python -m agents.agent57.eval_agent --environment_name=Pitfall --policy_index=0
"""

from absl import logging

from agents.agent57.agent import Agent57Config, build_network, evaluation_actor
from experiment.checkpoint import CheckpointError
from experiment.command_line import run_cli
from experiment.evaluate_checkpoint import FLAGS, EvalScript
from exploration.bandit import SlidingWindowUcb


def evaluator_best_arm(state: dict, config: Agent57Config) -> int:
    """The arm the evaluator's bandit rates best in the checkpoint (0 if it saw nothing)."""
    actor_state = (state.get("evaluation") or {}).get("actor_state")
    if actor_state is None:
        return 0
    try:
        saved = actor_state["policies"]["bandits"][0]
    except (KeyError, IndexError, TypeError):
        raise CheckpointError("its evaluator state holds no bandit") from None
    bandit = SlidingWindowUcb(config.num_policies, config.eval_bandit_window, 0.0, 0.0, 0)
    bandit.load_state_dict(saved)
    return bandit.best_arm()


def arm_actor(state, config: Agent57Config, network, device):
    """Plays --policy_index, or the evaluator bandit's best arm."""
    arm = FLAGS.policy_index
    if arm is None:
        arm = evaluator_best_arm(state, config)
        logging.info("Playing arm %d, the evaluator bandit's best", arm)
    return evaluation_actor(network, config, FLAGS.eval_epsilon, FLAGS.seed, arm, device)


POLICY_INDEX_HELP = (
    "Arm (policy j) to play; default: the arm with the best mean return in the evaluator "
    "bandit's window as the checkpoint saved it (j = 0 before any evaluation)."
)
SCRIPT = EvalScript("agent57", Agent57Config, build_network, arm_actor, (None, POLICY_INDEX_HELP))

if __name__ == "__main__":
    run_cli(SCRIPT.main)

"""Replays a trained DQN greedily and records one episode to recordings/.

python -m agents.dqn.eval_agent --environment_name=Pong
"""

from __future__ import annotations

from absl import flags

from experiment.checkpoint import load_module_state
from experiment.command_line import run_cli
from experiment.evaluate_checkpoint import define_eval_flags, run_evaluation
from experiment.run_config import resolve_device
from greedy_actors import EpsilonGreedyActor
from networks.value import q_network_for

FLAGS = flags.FLAGS
define_eval_flags()


def make_actor(state, env) -> EpsilonGreedyActor:
    device = resolve_device("auto")
    dueling = bool(state["config"]["dueling"])
    network = q_network_for(env.observation_shape, env.num_actions, dueling).to(device)
    load_module_state(network, state["learner"]["network"], "network")
    network.eval()
    return EpsilonGreedyActor(network, FLAGS.eval_epsilon, FLAGS.seed, device)


def main() -> None:
    run_evaluation("dqn", make_actor)


if __name__ == "__main__":
    run_cli(main)

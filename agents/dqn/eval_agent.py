"""Replays a trained DQN greedily and records one episode to recordings/.

python -m agents.dqn.eval_agent --environment_name=Pong
"""

from __future__ import annotations

from absl import flags

from agents.dqn.agent import DqnConfig, build_network
from experiment.command_line import run_cli
from experiment.evaluate_checkpoint import (
    define_eval_flags,
    network_from_checkpoint,
    run_evaluation,
)
from greedy_actors import EpsilonGreedyActor

FLAGS = flags.FLAGS
define_eval_flags()


def make_actor(state, env) -> EpsilonGreedyActor:
    _, network, device = network_from_checkpoint(state, DqnConfig, build_network, env)
    return EpsilonGreedyActor(network, FLAGS.eval_epsilon, FLAGS.seed, device)


def main() -> None:
    run_evaluation("dqn", make_actor)


if __name__ == "__main__":
    run_cli(main)

"""Replays a trained R2D2 agent greedily (carrying its LSTM state) and records one episode.

python -m agents.r2d2.eval_agent --environment_name=Pong
"""

from __future__ import annotations

from absl import flags

from agents.r2d2.agent import R2d2Config, build_network
from experiment.command_line import run_cli
from experiment.evaluate_checkpoint import (
    define_eval_flags,
    network_from_checkpoint,
    run_evaluation,
)
from greedy_actors import RecurrentEpsilonGreedyActor

FLAGS = flags.FLAGS
define_eval_flags()


def make_actor(state, env) -> RecurrentEpsilonGreedyActor:
    _, network, device = network_from_checkpoint(state, R2d2Config, build_network, env)
    return RecurrentEpsilonGreedyActor(network, FLAGS.eval_epsilon, FLAGS.seed, device)


def main() -> None:
    run_evaluation("r2d2", make_actor)


if __name__ == "__main__":
    run_cli(main)

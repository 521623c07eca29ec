"""Replays a trained R2D2 agent greedily (carrying its LSTM state) and records one episode.

python -m agents.r2d2.eval_agent --environment_name=Pong
"""

from __future__ import annotations

from absl import flags

from agents.r2d2.agent import R2d2Config, build_network
from checkpoint import load_module_state
from evaluation import config_from_checkpoint, define_eval_flags, run_evaluation
from experiment import resolve_device, run_cli
from greedy_actors import RecurrentEpsilonGreedyActor

FLAGS = flags.FLAGS
define_eval_flags()


def make_actor(state, env) -> RecurrentEpsilonGreedyActor:
    config = config_from_checkpoint(R2d2Config, state)
    device = resolve_device("auto")
    network = build_network(config, env.observation_shape, env.num_actions).to(device)
    load_module_state(network, state["learner"]["network"], "network")
    network.eval()
    return RecurrentEpsilonGreedyActor(network, FLAGS.eval_epsilon, FLAGS.seed, device)


def main() -> None:
    run_evaluation("r2d2", make_actor)


if __name__ == "__main__":
    run_cli(main)

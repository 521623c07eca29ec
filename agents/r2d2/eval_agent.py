"""Replays a trained R2D2 agent greedily (carrying its LSTM state) and records one episode.

python -m agents.r2d2.eval_agent --environment_name=Pong
"""

from __future__ import annotations

from absl import flags

from checkpoint import load_module_state
from evaluation import define_eval_flags, run_evaluation
from experiment import resolve_device, run_cli
from greedy_actors import RecurrentEpsilonGreedyActor
from networks.recurrent import recurrent_network_for

FLAGS = flags.FLAGS
define_eval_flags()


def make_actor(state, env) -> RecurrentEpsilonGreedyActor:
    device = resolve_device("auto")
    network = recurrent_network_for(env.observation_shape, env.num_actions).to(device)
    load_module_state(network, state["learner"]["network"], "network")
    network.eval()
    return RecurrentEpsilonGreedyActor(network, FLAGS.eval_epsilon, FLAGS.seed, device)


def main() -> None:
    run_evaluation("r2d2", make_actor)


if __name__ == "__main__":
    run_cli(main)

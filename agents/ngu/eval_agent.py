"""Replays a trained NGU agent and records it: by default the exploitative policy (j = 0,
β = 0), or any of the N policies with --policy_index.

python -m agents.ngu.eval_agent --environment_name=MontezumaRevenge
python -m agents.ngu.eval_agent --environment_name=MontezumaRevenge --policy_index=31
"""

from __future__ import annotations

from absl import flags

from agents.ngu.agent import NguConfig, build_network, evaluation_actor
from experiment.command_line import run_cli
from experiment.evaluate_checkpoint import (
    define_eval_flags,
    define_policy_index_flag,
    network_from_checkpoint,
    run_evaluation,
)

FLAGS = flags.FLAGS
define_eval_flags()
define_policy_index_flag(
    0,
    "Which of the N policies to play: 0 is the exploitative one (β = 0, the largest γ), "
    "N − 1 the most exploratory.",
)


def make_actor(state, env):
    config, network, device = network_from_checkpoint(state, NguConfig, build_network, env)
    return evaluation_actor(
        network, config, FLAGS.eval_epsilon, FLAGS.policy_index, FLAGS.seed, device
    )


def main() -> None:
    run_evaluation("ngu", make_actor)


if __name__ == "__main__":
    run_cli(main)

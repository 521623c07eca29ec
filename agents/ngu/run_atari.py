"""Trains NGU (Never Give Up) with N actor processes feeding one learner, on an Atari game or
on any Gymnasium environment with discrete actions.

python -m agents.ngu.run_atari --environment_name=MontezumaRevenge --num_actors=8
python -m agents.ngu.run_atari --environment_name=toy_envs:SparseGridRoom-v0
"""

from __future__ import annotations

import functools

from agents.ngu.agent import (
    PARALLEL_DEFAULTS,
    RUN_DEFAULTS,
    ActorFactory,
    NguConfig,
    build_learner,
    build_network,
    evaluation_actor,
)
from distributed.evaluation_process import EvalActorFactory
from experiment.command_line import run_cli
from experiment.run_config import RunConfig
from experiment.runner import define_parallel_agent_flags, run_parallel_agent_from_flags

define_parallel_agent_flags(NguConfig, RUN_DEFAULTS, PARALLEL_DEFAULTS)


def exploitative_actor_factory(config: NguConfig, run: RunConfig) -> EvalActorFactory:
    """Evaluation plays j = 0, the policy with β = 0 and the largest discount."""
    return EvalActorFactory(
        run.eval_env_spec,
        functools.partial(build_network, config),
        functools.partial(
            evaluation_actor, config=config, epsilon=run.eval_epsilon, policy_index=0
        ),
    )


def main() -> None:
    run_parallel_agent_from_flags(
        "ngu", NguConfig, build_learner, ActorFactory, exploitative_actor_factory, frame_stack=1
    )


if __name__ == "__main__":
    run_cli(main)

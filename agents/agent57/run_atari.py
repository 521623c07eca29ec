"""Trains Agent57 with N actor processes feeding one learner, on an Atari game or on any
Gymnasium environment with discrete actions.

python -m agents.agent57.run_atari --environment_name=Pitfall --num_actors=8
python -m agents.agent57.run_atari --environment_name=toy_envs:SparseGridRoom-v0
"""

from __future__ import annotations

import functools

from agents.agent57.agent import (
    ActorFactory,
    Agent57Config,
    build_learner,
    build_network,
    evaluation_actor,
)
from agents.ngu.agent import PARALLEL_DEFAULTS, RUN_DEFAULTS
from distributed.evaluation_process import EvalActorFactory
from experiment.command_line import run_cli
from experiment.run_config import RunConfig
from experiment.runner import define_parallel_agent_flags, run_parallel_agent_from_flags

define_parallel_agent_flags(Agent57Config, RUN_DEFAULTS, PARALLEL_DEFAULTS)  # NGU's Atari settings


def evaluator_factory(config: Agent57Config, run: RunConfig) -> EvalActorFactory:
    """The evaluation actor: its arm chosen by the evaluator's own bandit, which carries on
    from one evaluation to the next and is checkpointed."""
    return EvalActorFactory(
        run.eval_env_spec,
        functools.partial(build_network, config),
        functools.partial(evaluation_actor, config=config, epsilon=run.eval_epsilon),
    )


def main() -> None:
    run_parallel_agent_from_flags(
        "agent57", Agent57Config, build_learner, ActorFactory, evaluator_factory, frame_stack=1
    )


if __name__ == "__main__":
    run_cli(main)

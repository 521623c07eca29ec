"""Trains R2D2 with N actor processes feeding one learner, on an Atari game or on any
Gymnasium environment with discrete actions.

python -m agents.r2d2.run_atari --environment_name=Pong --num_actors=8
python -m agents.r2d2.run_atari --environment_name=toy_envs:SparseGridRoom-v0
"""

from __future__ import annotations

import functools

import torch

from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner, build_network
from evaluator import EvalActorFactory
from experiment import (
    RunConfig,
    config_from_flags,
    define_config_flags,
    define_run_flags,
    run_cli,
)
from greedy_actors import RecurrentEpsilonGreedyActor
from main_loop import ParallelConfig
from parallel_run import ParallelAgent, run_parallel_agent

# R2D2 plays the full action set on raw rewards; a lost life is not an episode end.
define_run_flags(
    {"clip_rewards": False, "full_action_space": True, "num_envs": 16, "eval_epsilon": 0.001}
)
define_config_flags(R2d2Config)
define_config_flags(ParallelConfig)


def evaluation_actor_factory(config: R2d2Config, run: RunConfig) -> EvalActorFactory:
    """The evaluation process's actor: ε-greedy (ε = --eval_epsilon) on R2D2's network."""
    return EvalActorFactory(
        run.eval_env_spec,
        functools.partial(build_network, config),
        functools.partial(
            RecurrentEpsilonGreedyActor, epsilon=run.eval_epsilon, device=torch.device("cpu")
        ),
    )


def main() -> None:
    agent = ParallelAgent(
        name="r2d2",
        config=config_from_flags(R2d2Config),
        build_learner=build_learner,
        actor_factory=ActorFactory,
        eval_factory=evaluation_actor_factory,
    )
    run_parallel_agent(agent, RunConfig.from_flags("r2d2"), config_from_flags(ParallelConfig))


if __name__ == "__main__":
    run_cli(main)

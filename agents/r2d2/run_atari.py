"""Trains R2D2 with N actor processes feeding one learner, on an Atari game or on any
Gymnasium environment with discrete actions.

python -m agents.r2d2.run_atari --environment_name=Pong --num_actors=8
python -m agents.r2d2.run_atari --environment_name=toy_envs:SparseGridRoom-v0
"""

from __future__ import annotations

import functools

import torch

from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner, build_network
from distributed.evaluation_process import EvalActorFactory
from experiment.command_line import run_cli
from experiment.run_config import RunConfig
from experiment.runner import define_parallel_agent_flags, run_parallel_agent_from_flags
from greedy_actors import RecurrentEpsilonGreedyActor

# R2D2 plays the full action set on raw rewards; a lost life is not an episode end.
define_parallel_agent_flags(
    R2d2Config,
    {"clip_rewards": False, "full_action_space": True, "num_envs": 16, "eval_epsilon": 0.001},
)


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
    run_parallel_agent_from_flags(
        "r2d2", R2d2Config, build_learner, ActorFactory, evaluation_actor_factory
    )


if __name__ == "__main__":
    run_cli(main)

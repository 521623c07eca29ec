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
from evaluator import EvalActorFactory
from experiment import (
    RunConfig,
    config_from_flags,
    define_config_flags,
    define_run_flags,
    run_cli,
)
from main_loop import ParallelConfig
from parallel_run import ParallelAgent, run_parallel_agent

# NGU's Atari settings, which Agent57 keeps: one frame, the full action set, raw rewards, a
# lost life is not an episode end, parameters fetched every 100 steps.
define_run_flags(
    {"clip_rewards": False, "full_action_space": True, "num_envs": 16, "eval_epsilon": 0.01}
)
define_config_flags(Agent57Config)
define_config_flags(ParallelConfig, defaults={"actor_update_interval": 100})


def evaluator_factory(config: Agent57Config, run: RunConfig) -> EvalActorFactory:
    """The evaluation actor: its arm chosen by the evaluator's own bandit, which carries on
    from one evaluation to the next and is checkpointed."""
    return EvalActorFactory(
        run.eval_env_spec,
        functools.partial(build_network, config),
        functools.partial(evaluation_actor, config=config, epsilon=run.eval_epsilon),
    )


def main() -> None:
    agent = ParallelAgent(
        name="agent57",
        config=config_from_flags(Agent57Config),
        build_learner=build_learner,
        actor_factory=ActorFactory,
        eval_factory=evaluator_factory,
    )
    run = RunConfig.from_flags("agent57", frame_stack=1)
    run_parallel_agent(agent, run, config_from_flags(ParallelConfig))


if __name__ == "__main__":
    run_cli(main)

"""Trains NGU (Never Give Up) with N actor processes feeding one learner, on an Atari game or
on any Gymnasium environment with discrete actions.

python -m agents.ngu.run_atari --environment_name=MontezumaRevenge --num_actors=8
python -m agents.ngu.run_atari --environment_name=toy_envs:SparseGridRoom-v0
"""

from __future__ import annotations

import functools

from agents.ngu.agent import (
    ActorFactory,
    NguConfig,
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

# NGU's Atari settings (Table 8): one frame (no stacking), the full action set, raw rewards,
# a lost life is not an episode end. Actors fetch parameters every 100 steps (Table 6).
define_run_flags(
    {"clip_rewards": False, "full_action_space": True, "num_envs": 16, "eval_epsilon": 0.01}
)
define_config_flags(NguConfig)
define_config_flags(ParallelConfig, defaults={"actor_update_interval": 100})


def main() -> None:
    config = config_from_flags(NguConfig)

    def exploitative_actor_factory(config: NguConfig, run: RunConfig) -> EvalActorFactory:
        # Evaluation plays j = 0, the policy with β = 0 and the largest discount.
        return EvalActorFactory(
            run.eval_env_spec,
            functools.partial(build_network, config),
            functools.partial(
                evaluation_actor, config=config, epsilon=run.eval_epsilon, policy_index=0
            ),
        )

    agent = ParallelAgent(
        name="ngu",
        config=config,
        build_learner=build_learner,
        actor_factory=ActorFactory,
        eval_factory=exploitative_actor_factory,
    )
    run = RunConfig.from_flags("ngu", frame_stack=1)
    run_parallel_agent(agent, run, config_from_flags(ParallelConfig))


if __name__ == "__main__":
    run_cli(main)

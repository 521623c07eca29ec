"""Trains R2D2 with N actor processes feeding one learner, on an Atari game or on any
Gymnasium environment with discrete actions.

python -m agents.r2d2.run_atari --environment_name=Pong --num_actors=8
python -m agents.r2d2.run_atari --environment_name=toy_envs:SparseGridRoom-v0
"""

from __future__ import annotations

import dataclasses

from absl import logging

import checkpoint
from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner
from experiment import (
    RunCheckpointer,
    RunConfig,
    config_from_flags,
    define_config_flags,
    define_run_flags,
    run_cli,
    run_metadata,
    seed_everything,
)
from greedy_actors import RecurrentEpsilonGreedyActor
from main_loop import IterationSchedule, ParallelConfig, ParallelTrainer, run_parallel_training
from tracker import MetricsWriter

# R2D2 plays the full action set on raw rewards; a lost life is not an episode end.
define_run_flags(
    {"clip_rewards": False, "full_action_space": True, "num_envs": 16, "eval_epsilon": 0.001}
)
define_config_flags(R2d2Config)
define_config_flags(ParallelConfig)


def main() -> None:
    run = RunConfig.from_flags("r2d2")
    config: R2d2Config = config_from_flags(R2d2Config)
    parallel: ParallelConfig = config_from_flags(ParallelConfig)
    seed_everything(run.seed)
    env_spec = run.env_spec
    eval_env = run.eval_env_spec.create(1, run.seed + 1_000_003)
    learner = build_learner(
        config,
        eval_env.observation_shape,
        eval_env.observation_dtype,
        eval_env.num_actions,
        run.seed,
        run.device,
    )
    factory = ActorFactory(config, env_spec, run.num_envs, parallel.num_actors)
    trainer = ParallelTrainer(parallel, factory, learner, run.seed)
    eval_actor = RecurrentEpsilonGreedyActor(
        learner.network, run.eval_epsilon, run.seed + 1, run.device
    )
    metadata = run_metadata("r2d2", run.environment_name, eval_env)
    checkpointer = RunCheckpointer(run.run_dir, metadata, run.resume)
    start_iteration, steps_into = 0, 0
    state = checkpointer.load_latest()
    if state is not None:
        learner.load_state_dict(state["learner"])
        trainer.load_state_dict(state["trainer"])
        checkpoint.restore_torch_rng(state["torch_rng"])
        start_iteration, steps_into = int(state["iteration"]), int(state["steps_into_iteration"])
        trainer.weights.publish(learner.network)

    def save(completed_iterations: int, steps_into_next: int) -> None:
        state = {
            "iteration": completed_iterations,
            "config": dataclasses.asdict(config),
            "parallel": dataclasses.asdict(parallel),
            **run.env_spec.checkpoint_state(),
            "learner": learner.state_dict(),
            "trainer": trainer.state_dict(),
            "torch_rng": checkpoint.torch_rng_state(),
        }
        checkpointer.save(completed_iterations, state, steps_into_next)

    run.claim_results_csv()
    writer = MetricsWriter(
        run.results_csv_path,
        run.tensorboard_dir,
        start_iteration,
        trainer.progress.total_steps,
        frames_per_step=run.frames_per_step,
    )
    logging.info(
        "R2D2 on %s: %d actors x %d envs, learner on %s",
        run.environment_name,
        parallel.num_actors,
        run.num_envs,
        run.device,
    )
    try:
        run_parallel_training(
            schedule=IterationSchedule(run.num_iterations, run.num_train_steps, run.num_eval_steps),
            trainer=trainer,
            eval_env=eval_env,
            eval_actor=eval_actor,
            save_checkpoint=save,
            writer=writer,
            start_iteration=start_iteration,
            steps_into_iteration=steps_into,
        )
    finally:
        writer.close()
        eval_env.close()


if __name__ == "__main__":
    run_cli(main)

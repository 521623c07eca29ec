"""Trains DQN on an Atari game or on any Gymnasium environment with discrete actions.

python -m agents.dqn.run_atari --environment_name=Pong
python -m agents.dqn.run_atari --environment_name=CartPole-v1
"""

from __future__ import annotations

import dataclasses

from absl import flags, logging

from agents.dqn.agent import DqnConfig, build_agent
from experiment import checkpoint, hyperparameters
from experiment.checkpoint import RunCheckpointer
from experiment.command_line import (
    config_from_flags,
    define_config_flags,
    define_run_flags,
    run_cli,
)
from experiment.run_config import RunConfig, run_metadata
from experiment.seeding import derive_seed, seed_everything
from greedy_actors import EpsilonGreedyActor
from main_loop import IterationSchedule, run_single_thread_training
from tracker import MetricsWriter

FLAGS = flags.FLAGS
define_run_flags()
define_config_flags(DqnConfig)


def main() -> None:
    run = RunConfig.from_flags("dqn")
    config: DqnConfig = config_from_flags(DqnConfig)
    seed_everything(run.seed)
    with run.env_spec.create(1, run.seed) as probe:
        metadata = run_metadata("dqn", run.environment_name, probe)
    checkpointer = RunCheckpointer(run.run_dir, metadata, run.resume)
    settings = hyperparameters.collect(run, config)
    start_iteration, start_step = 0, 0
    state = checkpointer.load_latest()
    if state is not None:
        hyperparameters.check_resume(
            state.get("hyperparameters"),
            settings,
            FLAGS.allow_config_change,
            str(checkpointer.resume_path),
        )
        start_iteration, start_step = int(state["iteration"]), int(state["total_steps"])
    # Streams a checkpoint does not restore start anew at the resume point (see seeding.py).
    train_env = run.env_spec.create(run.num_envs, derive_seed(run.seed, "train_env", start_step))
    eval_env = run.eval_env_spec.create(1, derive_seed(run.seed, "eval_env", start_step))
    total_updates = run.num_iterations * run.num_train_steps // config.agent_steps_per_update
    actor, learner = build_agent(
        config,
        train_env.observation_shape,
        train_env.observation_dtype,
        train_env.num_actions,
        run.num_envs,
        run.seed,
        run.device,
        total_updates,
        resume_point=start_step,
    )
    eval_actor = EpsilonGreedyActor(
        learner.network,
        run.eval_epsilon,
        derive_seed(run.seed, "eval_actor", start_step),
        run.device,
    )
    if state is not None:
        restore(state, actor, learner, checkpointer, run)

    def save(iteration: int, total_steps: int) -> None:
        if run.save_replay:  # Replay first: it is used only with the checkpoint that follows.
            checkpointer.save_replay(learner.replay.state_dict(), iteration)
        state = checkpoint_state(iteration, total_steps, config, actor, learner)
        state.update(run.env_spec.checkpoint_state())
        state["hyperparameters"] = settings
        checkpointer.save(iteration, state)

    run.claim_results_csv()
    writer = MetricsWriter(
        run.results_csv_path,
        run.tensorboard_dir,
        start_iteration,
        start_step,
        frames_per_step=run.frames_per_step,
    )
    logging.info("DQN on %s, %s, device %s", run.environment_name, config, run.device)
    try:
        run_single_thread_training(
            schedule=IterationSchedule(run.num_iterations, run.num_train_steps, run.num_eval_steps),
            actor=actor,
            learner=learner,
            agent_steps_per_update=config.agent_steps_per_update,
            train_env=train_env,
            eval_env=eval_env,
            eval_actor=eval_actor,
            save_checkpoint=save,
            writer=writer,
            start_iteration=start_iteration,
            start_step=start_step,
        )
    finally:
        writer.close()
        train_env.close()
        eval_env.close()


def checkpoint_state(iteration, total_steps, config, actor, learner) -> dict:
    return {
        "iteration": iteration,
        "total_steps": total_steps,
        "config": dataclasses.asdict(config),
        "actor": actor.state_dict(),
        "learner": learner.state_dict(),
        "torch_rng": checkpoint.torch_rng_state(),
    }


def restore(state, actor, learner, checkpointer: RunCheckpointer, run: RunConfig) -> None:
    actor.load_state_dict(state["actor"])
    learner.load_state_dict(state["learner"])
    checkpoint.restore_torch_rng(state["torch_rng"])
    if run.save_replay:
        replay_state = checkpointer.load_replay(int(state["iteration"]))
        if replay_state is not None:
            try:
                learner.replay.load_state_dict(replay_state)
            except (ValueError, KeyError) as error:  # Another configuration's replay.
                raise checkpoint.CheckpointError(
                    f"{checkpointer.replay_path} does not fit this run's replay ({error}); "
                    "move it away to refill replay instead"
                ) from None
            logging.info("Restored replay with %d transitions", learner.replay.size)


if __name__ == "__main__":
    run_cli(main)

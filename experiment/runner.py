"""The body every multi-process agent's run_atari.py shares (R2D2, NGU, Agent57): build the
learner, the actor factory and the evaluation actor, resume from the latest checkpoint, and run
the parallel loop with checkpoints, CSV and TensorBoard.

An agent plugs in through a `ParallelAgent`: its name, config, and three builders. Where the
actors run (--backend: processes on this machine, or Ray actors in a Ray cluster) is chosen
here, so every agent runs on both with the same flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from absl import flags, logging

from distributed.config import BackendConfig, ParallelConfig
from distributed.evaluation_process import EvalWorker, OverlappedEvaluation
from experiment import checkpoint, hyperparameters
from experiment.checkpoint import RunCheckpointer
from experiment.command_line import config_from_flags, define_config_flags, define_run_flags
from experiment.run_config import RunConfig, run_metadata
from experiment.seeding import derive_seed, seed_everything
from main_loop import IterationSchedule, ParallelTrainer, run_parallel_training
from tracker import MetricsWriter

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class ParallelAgent:
    """What one agent contributes to the shared run script.

    build_learner(config, observation_shape, observation_dtype, num_actions, seed, device).
    actor_factory(config, env_spec, num_envs, num_actors): a picklable actor-process factory.
    eval_factory(config, run): a picklable factory the evaluation process calls as
    factory(seed) -> (env, actor), e.g. an evaluator.EvalActorFactory.
    """

    name: str
    config: Any
    build_learner: Callable[..., Any]
    actor_factory: Callable[..., Any]
    eval_factory: Callable[[Any, RunConfig], Any]


def run_parallel_agent(agent: ParallelAgent, run: RunConfig, parallel: ParallelConfig) -> None:
    backend = config_from_flags(BackendConfig)
    seed_everything(run.seed)
    with run.eval_env_spec.create(1, run.seed) as probe:
        metadata = run_metadata(agent.name, run.environment_name, probe)
        shape, dtype = probe.observation_shape, probe.observation_dtype
        num_actions = probe.num_actions
    checkpointer = RunCheckpointer(run.run_dir, metadata, run.resume)
    settings = hyperparameters.collect(run, agent.config, parallel)
    state = checkpointer.load_latest()
    if state is not None:
        hyperparameters.check_resume(
            state.get("hyperparameters"),
            settings,
            FLAGS.allow_config_change,
            str(checkpointer.resume_path),
        )
    # Streams a checkpoint does not restore start anew at the resume point (see seeding.py).
    resume_point = int(state["trainer"]["total_steps"]) if state is not None else 0
    replay_seed = derive_seed(run.seed, "replay", resume_point)
    learner = agent.build_learner(agent.config, shape, dtype, num_actions, replay_seed, run.device)
    factory = agent.actor_factory(agent.config, run.env_spec, run.num_envs, parallel.num_actors)
    trainer = ParallelTrainer(
        parallel, factory, learner, run.seed, pool_factory=backend.pool_factory()
    )
    start_iteration, steps_into = 0, 0
    if state is not None:
        learner.load_state_dict(state["learner"])
        trainer.load_state_dict(state["trainer"])
        checkpoint.restore_torch_rng(state["torch_rng"])
        start_iteration, steps_into = int(state["iteration"]), int(state["steps_into_iteration"])
        if run.save_replay:
            restore_replay(learner, checkpointer, start_iteration)
        trainer.pool.publish(learner.network)

    run.claim_results_csv()
    writer = MetricsWriter(
        run.results_csv_path,
        run.tensorboard_dir,
        start_iteration,
        trainer.progress.total_steps - steps_into,
        frames_per_step=run.frames_per_step,
    )
    worker = EvalWorker(
        agent.eval_factory(agent.config, run),
        learner.network,
        max_restarts=parallel.max_actor_restarts,
        shutdown_timeout_s=parallel.shutdown_timeout_s,
    )
    evaluation = OverlappedEvaluation(worker, writer, run.seed, run.num_eval_steps)
    if state is not None:
        evaluation.load_state_dict(state.get("evaluation", {}), learner.network)

    def save(completed_iterations: int, steps_into_next: int) -> None:
        if run.save_replay and steps_into_next == 0:
            # Replay first: it is used only with the checkpoint of its iteration.
            checkpointer.save_replay(learner.replay.state_dict(), completed_iterations)
        state = {
            "iteration": completed_iterations,
            "config": dataclasses.asdict(agent.config),
            "parallel": dataclasses.asdict(parallel),
            "hyperparameters": settings,
            **run.env_spec.checkpoint_state(),
            "learner": learner.state_dict(),
            "trainer": trainer.state_dict(),
            "evaluation": evaluation.state_dict(learner.network),
            "torch_rng": checkpoint.torch_rng_state(),
        }
        checkpointer.save(completed_iterations, state, steps_into_next)

    logging.info(
        "%s on %s: %d actors x %d envs (%s backend), learner on %s",
        agent.name.upper(),
        run.environment_name,
        parallel.num_actors,
        run.num_envs,
        backend.backend,
        run.device,
    )
    try:
        run_parallel_training(
            schedule=IterationSchedule(run.num_iterations, run.num_train_steps, run.num_eval_steps),
            trainer=trainer,
            evaluation=evaluation,
            save_checkpoint=save,
            start_iteration=start_iteration,
            steps_into_iteration=steps_into,
        )
    finally:
        writer.close()


def restore_replay(learner, checkpointer: RunCheckpointer, iteration: int) -> None:
    """Loads the replay saved with checkpoint `iteration`, if it was (else replay refills)."""
    arrays = checkpointer.load_replay(iteration)
    if arrays is None:
        return
    try:
        learner.replay.load_state_dict(arrays)
    except (ValueError, KeyError) as error:  # Another configuration's replay, or a foreign file.
        raise checkpoint.CheckpointError(
            f"{checkpointer.replay_path} does not fit this run's replay ({error}); move it "
            "away to refill replay instead"
        ) from None
    logging.info("Restored replay with %d sequences", learner.replay.size)


def define_agent_flags(
    config_cls: type,
    run_defaults: dict[str, Any],
    parallel_defaults: dict[str, Any] | None = None,
) -> None:
    """A multi-process agent's flags: the shared run flags with the agent's defaults, one flag
    per field of its config, the parallel loop's (with the agent's defaults), and where the
    actors run (--backend)."""
    define_run_flags(run_defaults)
    define_config_flags(config_cls)
    define_config_flags(ParallelConfig, defaults=parallel_defaults)
    define_config_flags(BackendConfig)


def run_agent_from_flags(
    name: str,
    config_cls: type,
    build_learner: Callable[..., Any],
    actor_factory: Callable[..., Any],
    eval_factory: Callable[[Any, RunConfig], Any],
    **atari_overrides: Any,
) -> None:
    """A run_atari.py's main(): the agent's config from the flags, then the shared run."""
    agent = ParallelAgent(
        name, config_from_flags(config_cls), build_learner, actor_factory, eval_factory
    )
    run = RunConfig.from_flags(name, **atari_overrides)
    run_parallel_agent(agent, run, config_from_flags(ParallelConfig))

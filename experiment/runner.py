"""One runner for every agent's run_atari.py: build the agent from its config, resume from the
latest checkpoint, and run its loop with checkpoints, CSV and TensorBoard.

An agent plugs in with a short description of itself:
- `SingleThreadAgent` (DQN): one process acts and learns in turn (main_loop's single-thread
  loop), evaluating on its own environment between iterations.
- `ParallelAgent` (R2D2, NGU, Agent57): actor processes feed one learner, and an evaluation
  process evaluates beside the next iteration. Where the actors run (--backend: processes on
  this machine, or Ray actors in a Ray cluster) is chosen here, so every agent runs on both.

What both share (the probe of the environment, the checkpoint bookkeeping, the resume check,
the replay file, the results CSV) is `_RunStart`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from absl import flags, logging

from distributed.actors import PoolFactory, process_pool
from distributed.config import BackendConfig, ParallelConfig
from distributed.evaluation_process import EvalWorker, OverlappedEvaluation
from experiment import checkpoint, denormals, hyperparameters
from experiment.checkpoint import RunCheckpointer
from experiment.command_line import config_from_flags, define_config_flags, define_run_flags
from experiment.run_config import RunConfig, run_metadata
from experiment.seeding import derive_seed, seed_everything
from main_loop import (
    IterationSchedule,
    ParallelTrainer,
    run_parallel_training,
    run_single_thread_training,
)
from tracker import MetricsWriter

FLAGS = flags.FLAGS


@dataclasses.dataclass
class _RunStart:
    """What every run knows before it builds its agent: the environment's shapes, its
    checkpoints, the settings a resume must match, and the checkpoint it resumes (or None)."""

    observation_shape: tuple[int, ...]
    observation_dtype: Any
    num_actions: int
    checkpointer: RunCheckpointer
    settings: dict[str, Any]
    state: dict[str, Any] | None

    def writer(self, run: RunConfig, start_iteration: int, start_step: int) -> MetricsWriter:
        """Claims the results CSV for this run, then opens the CSV and TensorBoard writer."""
        run.claim_results_csv()
        return MetricsWriter(
            run.results_csv_path,
            run.tensorboard_dir,
            start_iteration,
            start_step,
            frames_per_step=run.frames_per_step,
        )

    def save_replay(self, run: RunConfig, learner, iteration: int) -> None:
        if run.save_replay:  # Replay first: it is used only with the checkpoint that follows.
            self.checkpointer.save_replay(learner.replay.state_dict(), iteration)


def _start_run(name: str, run: RunConfig, *configs: Any) -> _RunStart:
    # Before any torch work, so that the threads torch starts inherit the CPU's mode.
    if not denormals.flush_denormals(run.flush_denormals) and run.flush_denormals:
        logging.warning("--flush_denormals: this CPU cannot flush denormals; arithmetic is IEEE")
    seed_everything(run.seed)
    with run.eval_env_spec.create(1, run.seed) as probe:
        metadata = run_metadata(name, run.environment_name, probe)
        shape, dtype, num_actions = (
            probe.observation_shape,
            probe.observation_dtype,
            probe.num_actions,
        )
    checkpointer = RunCheckpointer(run.run_dir, metadata, run.resume)
    settings = hyperparameters.collect(run, *configs)
    state = checkpointer.load_latest()
    if state is not None:
        hyperparameters.check_resume(
            state.get("hyperparameters"),
            settings,
            FLAGS.allow_config_change,
            str(checkpointer.resume_path),
            hyperparameters.added_settings(*configs),
        )
    return _RunStart(shape, dtype, num_actions, checkpointer, settings, state)


# --------------------------------------------------------------------------------------------
# Single-thread agents (DQN)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SingleThreadAgent:
    """What a single-thread agent contributes to the runner.

    build_agent(config, observation_shape, observation_dtype, num_actions, num_envs, seed,
      device, total_updates, resume_point) -> (actor, learner), sharing the online network;
      the learner has `replay`, `network`, and both have state_dict/load_state_dict.
    eval_actor(network, epsilon, seed, device): the greedy actor of the evaluation phase.
    The config must have `agent_steps_per_update`.
    """

    name: str
    config: Any
    build_agent: Callable[..., tuple[Any, Any]]
    eval_actor: Callable[..., Any]


def run_single_thread_agent(agent: SingleThreadAgent, run: RunConfig) -> None:
    start = _start_run(agent.name, run, agent.config)
    state, config = start.state, agent.config
    start_iteration, start_step = 0, 0
    if state is not None:
        start_iteration, start_step = int(state["iteration"]), int(state["total_steps"])
    # Streams a checkpoint does not restore start anew at the resume point (see seeding.py).
    train_env = run.env_spec.create(run.num_envs, derive_seed(run.seed, "train_env", start_step))
    eval_env = run.eval_env_spec.create(1, derive_seed(run.seed, "eval_env", start_step))
    total_updates = run.num_iterations * run.num_train_steps // config.agent_steps_per_update
    actor, learner = agent.build_agent(
        config,
        start.observation_shape,
        start.observation_dtype,
        start.num_actions,
        run.num_envs,
        run.seed,
        run.device,
        total_updates,
        resume_point=start_step,
    )
    eval_actor = agent.eval_actor(
        learner.evaluation_network,
        run.eval_epsilon,
        derive_seed(run.seed, "eval_actor", start_step),
        run.device,
    )
    if state is not None:
        actor.load_state_dict(state["actor"])
        learner.load_state_dict(state["learner"])
        checkpoint.restore_torch_rng(state["torch_rng"])
        if run.save_replay:
            restore_replay(learner, start.checkpointer, start_iteration)

    def save(iteration: int, total_steps: int) -> None:
        start.save_replay(run, learner, iteration)
        start.checkpointer.save(
            iteration,
            {
                "iteration": iteration,
                "total_steps": total_steps,
                "config": dataclasses.asdict(config),
                "actor": actor.state_dict(),
                "learner": learner.state_dict(),
                "torch_rng": checkpoint.torch_rng_state(),
                **run.env_spec.checkpoint_state(),
                "hyperparameters": start.settings,
            },
        )

    writer = start.writer(run, start_iteration, start_step)
    logging.info(
        "%s on %s, %s, device %s", agent.name.upper(), run.environment_name, config, run.device
    )
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


def define_single_thread_agent_flags(
    config_cls: type, run_defaults: dict[str, Any] | None = None
) -> None:
    """A single-thread agent's flags: the shared run flags (with the agent's defaults) and one
    flag per config field."""
    define_run_flags(run_defaults)
    define_config_flags(config_cls)


def run_single_thread_agent_from_flags(
    name: str, config_cls: type, build_agent: Callable[..., Any], eval_actor: Callable[..., Any]
) -> None:
    """A single-thread run_atari.py's main(): the agent's config from the flags, then the run."""
    agent = SingleThreadAgent(name, config_from_flags(config_cls), build_agent, eval_actor)
    run_single_thread_agent(agent, RunConfig.from_flags(name))


# --------------------------------------------------------------------------------------------
# Parallel agents (R2D2, NGU, Agent57)
# --------------------------------------------------------------------------------------------


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
    start = _start_run(agent.name, run, agent.config, parallel)
    state, checkpointer, settings = start.state, start.checkpointer, start.settings
    shape, dtype, num_actions = start.observation_shape, start.observation_dtype, start.num_actions
    # Streams a checkpoint does not restore start anew at the resume point (see seeding.py).
    resume_point = int(state["trainer"]["total_steps"]) if state is not None else 0
    replay_seed = derive_seed(run.seed, "replay", resume_point)
    learner = agent.build_learner(agent.config, shape, dtype, num_actions, replay_seed, run.device)
    factory = agent.actor_factory(agent.config, run.env_spec, run.num_envs, parallel.num_actors)
    for line in factory.describe() if hasattr(factory, "describe") else []:
        logging.info("%s", line)
    trainer = ParallelTrainer(
        parallel, factory, learner, run.seed, pool_factory=actor_pool_factory(backend)
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

    writer = start.writer(run, start_iteration, trainer.progress.total_steps - steps_into)
    worker = EvalWorker(
        agent.eval_factory(agent.config, run),
        learner.evaluation_network,
        max_restarts=parallel.max_actor_restarts,
        shutdown_timeout_s=parallel.shutdown_timeout_s,
    )
    evaluation = OverlappedEvaluation(worker, writer, run.seed, run.num_eval_steps)
    if state is not None:
        evaluation.load_state_dict(state.get("evaluation", {}), learner.evaluation_network)

    def save(completed_iterations: int, steps_into_next: int) -> None:
        if steps_into_next == 0:  # A partial checkpoint is not an iteration's: no replay.
            start.save_replay(run, learner, completed_iterations)
        state = {
            "iteration": completed_iterations,
            "config": dataclasses.asdict(agent.config),
            "parallel": dataclasses.asdict(parallel),
            "hyperparameters": settings,
            **run.env_spec.checkpoint_state(),
            "learner": learner.state_dict(),
            "trainer": trainer.state_dict(),
            "evaluation": evaluation.state_dict(learner.evaluation_network),
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


def actor_pool_factory(backend: BackendConfig) -> PoolFactory:
    """How the run's actors are started: processes on this machine, or Ray actors."""
    if backend.backend == "process":
        return process_pool
    from distributed import ray_backend  # Imports Ray: only this backend needs it.

    return ray_backend.ray_pool_factory(backend.ray_address, backend.ray_cpus_per_actor)


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
    logging.info("Restored replay with %d %s", learner.replay.size, learner.replay.ITEMS)


def define_parallel_agent_flags(
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


def run_parallel_agent_from_flags(
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

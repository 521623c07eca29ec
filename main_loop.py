"""Training loops: single-thread (DQN) and multi-process actor-learner (R2D2 and later).

Both run the same iteration: `num_train_steps` agent steps of training, then
`num_eval_steps` of evaluation with a greedy actor on a separate environment, then a
checkpoint, a CSV row and TensorBoard scalars.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import torch
from absl import logging

from distributed.actors import PoolFactory, process_pool
from distributed.config import ParallelConfig
from distributed.intake import Arrival, IntakeThread, RateLimiter
from distributed.threads import LearnerThreads
from experiment.errors import NonFiniteLossError
from tracker import EpisodeTracker, MetricsWriter, ProgressPrinter, ScalarAverager


class ActorLike(Protocol):
    def reset(self) -> None: ...
    def step(self, timestep) -> np.ndarray: ...


class LearnerLike(Protocol):
    num_updates: int

    def ready(self) -> bool: ...
    def step(self) -> Mapping[str, float]: ...


@contextlib.contextmanager
def interrupts_deferred():
    """Holds Ctrl-C and SIGTERM back until the block ends, then delivers them.

    A learner update changes several things in turn (normalisers, each optimiser group, the
    update count, priorities). An interrupt between two of them would leave a state that no
    update produced, and the checkpoint written on the interrupt would resume from it. A second
    signal inside the block interrupts at once. Signals reach only the main thread, so elsewhere
    this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame) -> None:
        if received:  # A second one: the update may be stuck, and the user insists.
            raise KeyboardInterrupt
        received.append(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not None:  # None: installed outside Python, left alone.
            previous[signum] = signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum in received[:1]:
        signal.raise_signal(signum)  # The restored handler acts on it now.


@dataclasses.dataclass(frozen=True)
class IterationSchedule:
    num_iterations: int
    num_train_steps: int
    num_eval_steps: int


class EnvRunner:
    """Steps an EnvironmentBatch with an actor; episodes carry on across calls."""

    def __init__(self, env) -> None:
        self.env = env
        self.timestep = None

    def run(
        self,
        actor: ActorLike,
        num_steps: int,
        tracker: EpisodeTracker,
        after_step: Callable[[int], None] | None = None,
        progress: ProgressPrinter | None = None,
    ) -> int:
        """Runs at least `num_steps` agent steps (whole batches of E); returns steps taken."""
        if self.timestep is None:
            actor.reset()
            self.timestep = self.env.reset()
            tracker.step(self.timestep)
        steps = 0
        while steps < num_steps:
            actions = actor.step(self.timestep)
            self.timestep = self.env.step(actions)
            tracker.step(self.timestep)
            steps += self.env.num_envs
            if after_step is not None:
                after_step(self.env.num_envs)
            if progress is not None:
                progress.update(steps)
        return steps


def evaluate(env, actor: ActorLike, num_steps: int) -> EpisodeTracker:
    """Plays `num_steps` from fresh episodes; only games that finish are counted."""
    if num_steps <= 0:
        return EpisodeTracker(1)
    tracker = EpisodeTracker(env.num_envs)
    EnvRunner(env).run(actor, num_steps, tracker)
    return tracker


class UpdateScheduler:
    """Keeps learner updates at one per `agent_steps_per_update` steps once replay is warm."""

    def __init__(self, agent_steps_per_update: float) -> None:
        self.agent_steps_per_update = agent_steps_per_update
        self.warm_steps = 0
        self.updates_done = 0

    def updates_due(self, new_agent_steps: int, ready: bool) -> int:
        if not ready:
            return 0
        self.warm_steps += new_agent_steps
        due = int(self.warm_steps // self.agent_steps_per_update) - self.updates_done
        self.updates_done += due
        return due


class FeedLearner:
    """Runs an actor that emits payloads (chunks) in-process, storing them for the learner.

    This lets the single-thread loop train agents built for the multi-process loop (R2D2 and
    its successors), which is how their learning tests run deterministically. In one process
    the actor acts with the learner's own networks (Q and, for NGU and its successors, the
    embedding), so every update reaches it at once.
    """

    def __init__(self, actor, learner) -> None:
        actor.network = learner.network
        if hasattr(actor, "embeddings"):
            actor.embeddings.embedding = learner.network.embedding
        self.actor = actor
        self.learner = learner
        self.stored = 0  # Sequences stored so far, for a caller that paces learning by them.

    def reset(self) -> None:
        self.actor.reset()

    def step(self, timestep) -> np.ndarray:
        actions = self.actor.step(timestep)
        self.stored += self.learner.ingest(self.actor.drain())
        if hasattr(self.actor, "weights_updated"):
            self.actor.weights_updated()  # in-process, every update reaches the actor at once
        return actions


def run_single_thread_training(
    *,
    schedule: IterationSchedule,
    actor: ActorLike,
    learner: LearnerLike,
    agent_steps_per_update: float,
    train_env,
    eval_env,
    eval_actor: ActorLike,
    save_checkpoint: Callable[[int, int], None],
    writer: MetricsWriter,
    start_iteration: int = 0,
    start_step: int = 0,
) -> list[dict[str, float]]:
    """The DQN loop: act, learn every few steps, evaluate, checkpoint. Returns each row."""
    runner = EnvRunner(train_env)
    scheduler = UpdateScheduler(agent_steps_per_update)
    # One tracker for the whole run: a game that spans two iterations is counted whole.
    train_tracker = EpisodeTracker(train_env.num_envs)
    total_steps = start_step
    rows = []
    for iteration in range(start_iteration + 1, schedule.num_iterations + 1):
        started = time.monotonic()
        learner_stats = ScalarAverager()

        def learn(new_steps: int, stats: ScalarAverager = learner_stats) -> None:
            due = scheduler.updates_due(new_steps, learner.ready())
            if due:
                # One hold for the agent step's updates, not one each: installing and restoring
                # the handlers takes tens of µs, a few percent of a small network's update.
                with interrupts_deferred():
                    for _ in range(due):
                        stats.add(learner.step())

        progress = ProgressPrinter(f"iteration {iteration} train", schedule.num_train_steps)
        try:
            steps = runner.run(actor, schedule.num_train_steps, train_tracker, learn, progress)
        except NonFiniteLossError as error:
            raise error.at_iteration(iteration) from None  # Nothing of it is saved.
        train_seconds = time.monotonic() - started
        eval_tracker = evaluate(eval_env, eval_actor, schedule.num_eval_steps)
        total_steps += steps
        row = {
            **train_tracker.take_statistics("train"),
            **learner_stats.means("learner"),
            **eval_tracker.statistics("eval"),
            "train/steps_per_second": steps / max(train_seconds, 1e-9),
            "learner/num_updates": float(learner.num_updates),
            **replay_statistics(learner),
        }
        # The row goes first: a resume drops rows after its checkpoint, so a kill between the
        # two writes repeats the row instead of losing it.
        writer.write(iteration, total_steps, row)
        save_checkpoint(iteration, total_steps)
        log_iteration(iteration, total_steps, row)
        rows.append(row)
    return rows


def replay_statistics(learner) -> dict[str, float]:
    """Replay size and resident memory, when the learner has a replay that reports them."""
    replay = getattr(learner, "replay", None)
    if replay is None or not hasattr(replay, "memory_bytes"):
        return {}
    return {"replay/size": float(replay.size), "replay/memory_mb": replay.memory_bytes() / 2**20}


def log_iteration(iteration: int, total_steps: int, row: Mapping[str, Any]) -> None:
    def show(key: str) -> str:
        value = row.get(key, math.nan)
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"

    logging.info(
        "iteration %d, step %d: train return %s (%d games), eval return %s (%d games), %s steps/s",
        iteration,
        total_steps,
        show("train/episode_return"),
        row.get("train/num_episodes", 0),
        show("eval/episode_return"),
        row.get("eval/num_episodes", 0),
        show("train/steps_per_second"),
    )


class ParallelLearnerLike(LearnerLike, Protocol):
    network: torch.nn.Module
    batch_size: int

    def ingest(self, payloads: list) -> int:
        """Stores payloads (e.g. chunks) in replay; returns the number of samples added.

        A learner may split this into `assemble(payloads) -> items` (run by the intake thread,
        touching nothing the learner thread uses) and `store(items) -> int` (run by the learner
        thread between updates); the intake thread then assembles beside the updates."""
        ...


@dataclasses.dataclass
class ParallelProgress:
    """Counters that survive iterations and go into checkpoints."""

    total_steps: int = 0
    actor_steps: dict[int, int] = dataclasses.field(default_factory=dict)
    actor_episodes: dict[int, int] = dataclasses.field(default_factory=dict)


class ParallelTrainer:
    """The learner side: take in actor messages, learn at the replay ratio, publish weights.

    Messages are taken in (and assembled) by an IntakeThread beside the updates; this thread
    stores what arrived, learns while the rate limiter allows, and publishes weights. The
    actors come from `pool_factory`: processes on this machine by default, Ray actors with
    ray_backend.ray_pool_factory; nothing here depends on which."""

    def __init__(
        self,
        config: ParallelConfig,
        actor_factory,
        learner: ParallelLearnerLike,
        seed: int,
        log=logging.info,
        pool_factory: PoolFactory = process_pool,
    ) -> None:
        self.config = config
        self.learner = learner
        self.threads = LearnerThreads(config.learner_threads, config.num_actors)
        self.threads.use(actors_throttled=False)
        self.pool = pool_factory(config, actor_factory, learner.network, seed)
        self.pool.publish(learner.network)
        self.limiter = RateLimiter(config.replay_ratio, learner.batch_size)
        self.intake = IntakeThread(
            self.pool,
            learner,
            self.limiter,
            capacity=config.num_actors * config.messages_in_flight,
        )
        self.progress = ParallelProgress()
        self._actor_statistics: dict[str, list[float]] = {}
        self._last_update_clock: tuple[float, float] | None = None
        self.log = log

    def __enter__(self) -> ParallelTrainer:
        self.pool.start()
        self.intake.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.intake.stop()
        self.pool.stop()
        if hasattr(self.learner, "close"):
            self.learner.close()  # its prefetch threads

    def run_steps(
        self, num_steps: int, label: str, poll: Callable[[], None] | None = None
    ) -> tuple[EpisodeTracker, dict, dict]:
        """Trains until actors report `num_steps` more agent steps; returns statistics.

        `poll` is called about every half second (between updates), e.g. to write a row whose
        evaluation has arrived."""
        games = EpisodeTracker(1)
        learner_stats = ScalarAverager()
        per_actor: dict[int, list[float]] = {}
        target = self.progress.total_steps + num_steps
        printer = ProgressPrinter(label, num_steps, log=self.log)
        start_steps, start_updates = self.progress.total_steps, self.learner.num_updates
        start_inserted, start_learned = self.limiter.inserted, self.limiter.learned
        started = time.monotonic()
        next_poll = 0.0
        while self.progress.total_steps < target:
            if time.monotonic() >= next_poll:
                self._supervise(poll)
                next_poll = time.monotonic() + 0.5
            self._store_arrivals(games, per_actor, target, timeout=0.0)
            self.limiter.observe_ready(self.learner.ready())
            if self.limiter.may_learn():
                self._learn(learner_stats)
            else:
                self._store_arrivals(games, per_actor, target, timeout=0.5)
            printer.update(self.progress.total_steps - start_steps)
        seconds = max(time.monotonic() - started, 1e-9)
        inserted = self.limiter.inserted - start_inserted
        rates = {
            "train/steps_per_second": (self.progress.total_steps - start_steps) / seconds,
            "learner/updates_per_second": (self.learner.num_updates - start_updates) / seconds,
            "learner/num_updates": float(self.learner.num_updates),
            # Learned samples per inserted sample over this call (the ratio it holds).
            "learner/replay_ratio": (self.limiter.learned - start_learned) / inserted
            if inserted
            else math.nan,
            "learner/torch_threads": float(self.threads.current),
            "actors/restarts": float(self.pool.total_restarts),
        }
        for index, returns in sorted(per_actor.items()):
            if returns:
                rates[f"actor_{index}/episode_return"] = float(np.mean(returns))
        rates |= self._take_actor_statistics()
        return games, learner_stats.means("learner"), rates

    def _supervise(self, poll: Callable[[], None] | None) -> None:
        self.intake.raise_error()
        while True:
            try:
                self.log(self.intake.events.get_nowait())
            except queue.Empty:
                break
        if poll is not None:
            poll()

    def _learn(self, learner_stats: ScalarAverager) -> None:
        # Actors are held back when the intake thread has been paused by the limiter for most
        # of the previous update: their cores are then the learner's.
        now, paused = time.monotonic(), self.intake.paused_seconds
        last_time, last_paused = self._last_update_clock or (now, paused)
        threads = self.threads.use(actors_throttled=paused - last_paused > 0.5 * (now - last_time))
        self._last_update_clock = (now, paused)
        with interrupts_deferred():
            learner_stats.add(self.learner.step())
            self.limiter.add_learned(self.learner.batch_size)
        self.threads.record(threads, time.monotonic() - now)
        if self.learner.num_updates % self.config.publish_period == 0:
            self.pool.publish(self.learner.network)

    def _store_arrivals(self, games, per_actor, target: int, timeout: float) -> None:
        """Stores what the intake thread took in, until the step target; waits at most
        `timeout` seconds for the first arrival."""
        while self.progress.total_steps < target:
            try:
                arrival = self.intake.arrivals.get(block=timeout > 0, timeout=timeout or None)
            except queue.Empty:
                return
            timeout = 0.0
            self._ingest(arrival, games, per_actor)

    def _take_actor_statistics(self) -> dict[str, float]:
        """Means of the agent-specific scalars actors reported since the last call."""
        means = {k: float(np.mean(v)) for k, v in sorted(self._actor_statistics.items()) if v}
        self._actor_statistics = {}
        return means

    def _ingest(self, arrival: Arrival, games: EpisodeTracker, per_actor) -> None:
        message = arrival.message
        if arrival.items is not None:
            self.learner.store(arrival.items)  # Counted by the intake thread already.
        else:
            self.limiter.add_inserted(self.learner.ingest(message.payloads))
        index = message.actor_index
        if message.actor_state is not None:
            self.pool.actor_states[index] = message.actor_state
        for key, values in (message.statistics or {}).items():
            self._actor_statistics.setdefault(key, []).extend(values)
        self.progress.total_steps += message.num_steps
        steps, episodes = self.progress.actor_steps, self.progress.actor_episodes
        steps[index] = steps.get(index, 0) + message.num_steps
        episodes[index] = episodes.get(index, 0) + len(message.episode_returns)
        games.episode_returns.extend(message.episode_returns)
        games.episode_lengths.extend(message.episode_lengths)
        per_actor.setdefault(index, []).extend(message.episode_returns)

    def state_dict(self) -> dict[str, Any]:
        return {
            "total_steps": self.progress.total_steps,
            "actor_steps": {str(k): v for k, v in self.progress.actor_steps.items()},
            "actor_episodes": {str(k): v for k, v in self.progress.actor_episodes.items()},
            "actor_restarts": self.pool.actor_restarts,
            "actor_states": {str(k): v for k, v in self.pool.actor_states.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.progress.total_steps = int(state["total_steps"])
        self.pool.resume_point = self.progress.total_steps  # New actor streams from here.
        self.progress.actor_steps = {int(k): int(v) for k, v in state["actor_steps"].items()}
        self.progress.actor_episodes = {int(k): int(v) for k, v in state["actor_episodes"].items()}
        states = state.get("actor_states", {})  # absent in checkpoints of older runs
        self.pool.actor_states = {int(k): v for k, v in states.items()}


def run_parallel_training(
    *,
    schedule: IterationSchedule,
    trainer: ParallelTrainer,
    evaluation,
    save_checkpoint: Callable[[int, int], None],
    start_iteration: int = 0,
    steps_into_iteration: int = 0,
) -> list[dict[str, float]]:
    """The R2D2-style loop: train, evaluate beside the next iteration, checkpoint.

    At the end of iteration k, `evaluation` (an evaluator.OverlappedEvaluation) starts
    evaluating the weights as they are, and will write row k when the result arrives (after row
    k − 1, which it waits for first); then checkpoint k is saved, holding row k's training part
    until its row is written. `save_checkpoint(completed_iterations, steps_into_next_iteration)`
    writes the learner state; a partial one (steps > 0, on Ctrl-C or SIGTERM) lets --resume
    finish the interrupted iteration. Returns the rows written.
    """
    completed = start_iteration
    iteration_start = trainer.progress.total_steps - steps_into_iteration
    with trainer, evaluation:
        try:
            for iteration in range(start_iteration + 1, schedule.num_iterations + 1):
                done = trainer.progress.total_steps - iteration_start
                try:
                    games, learner_means, rates = trainer.run_steps(
                        schedule.num_train_steps - done,
                        f"iteration {iteration} train",
                        poll=evaluation.poll,
                    )
                except NonFiniteLossError as error:
                    raise error.at_iteration(iteration) from None  # Nothing of it is saved.
                completed, iteration_start = iteration, trainer.progress.total_steps
                scalars = {
                    **games.statistics("train"),
                    **learner_means,
                    **rates,
                    **replay_statistics(trainer.learner),
                }
                evaluation.begin(
                    iteration, iteration_start, scalars, trainer.learner.evaluation_network
                )
                save_checkpoint(completed, 0)
            evaluation.finish()
        except KeyboardInterrupt:
            steps_in = trainer.progress.total_steps - iteration_start
            logging.info(
                "Interrupted: saving a checkpoint %d steps into iteration %d",
                steps_in,
                completed + 1,
            )
            save_checkpoint(completed, steps_in)
            raise
    return evaluation.rows

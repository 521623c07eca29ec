"""Training loops: single-thread (DQN) and multi-process actor-learner (R2D2 and later).

Both run the same iteration: `num_train_steps` agent steps of training, then
`num_eval_steps` of evaluation with a greedy actor on a separate environment, then a
checkpoint, a CSV row and TensorBoard scalars.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing as std_mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing import connection as mp_connection
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.multiprocessing as mp
from absl import logging

from errors import NonFiniteLossError, UserError
from seeding import derive_seed
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
    its successors), which is how their learning tests run deterministically.
    """

    def __init__(self, actor, learner) -> None:
        self.actor = actor
        self.learner = learner

    def reset(self) -> None:
        self.actor.reset()

    def step(self, timestep) -> np.ndarray:
        actions = self.actor.step(timestep)
        self.learner.ingest(self.actor.drain())
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
            for _ in range(scheduler.updates_due(new_steps, learner.ready())):
                with interrupts_deferred():
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


# ==================================================================================================
# Multi-process actor-learner loop.
#
# Actors run in spawned processes; each steps a batch of environments with batched CPU inference
# and sends its finished sequences (already compressed) to the learner. Design choices, each
# against a failure mode seen in public implementations:
# - One pipe per actor with a credit semaphore instead of one shared queue: an actor killed in
#   the middle of a write can only break its own channel, which is thrown away with it.
# - Weights go through one shared-memory tensor guarded by a seqlock (a version counter that is
#   odd while the learner writes). Readers never take a lock, so an actor killed mid-read
#   cannot block the learner.
# - Every wait has a timeout; the learner blocks in `connection.wait` only when it has nothing
#   to learn from, so there is no busy-waiting.
# ==================================================================================================


class ActorFailure(UserError):
    """An actor died more often than allowed."""


class SharedWeights:
    """The learner's acting state (parameters AND buffers, e.g. normalisation statistics) in
    shared memory, published with a version counter.

    Every floating tensor of `module.state_dict()` is flattened into one shared buffer per
    dtype, so float64 statistics keep their precision. Seqlock protocol: the learner makes the
    version odd, copies, then makes it even. A reader copies only when the version is even and
    changed, and keeps the copy only if the version did not move during the copy.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self.keys = _shared_keys(network)
        state = network.state_dict()
        self.buffers: dict[str, torch.Tensor] = {}
        for dtype, keys in _group_by_dtype(state, self.keys).items():
            flat = torch.cat([state[k].detach().reshape(-1).cpu() for k in keys])
            self.buffers[dtype] = flat.clone().share_memory_()
        self.version = torch.zeros(1, dtype=torch.int64).share_memory_()

    def publish(self, network: torch.nn.Module) -> int:
        state = network.state_dict()
        version = int(self.version[0])
        self.version[0] = version + 1
        for dtype, keys in _group_by_dtype(state, self.keys).items():
            flat = torch.cat([state[k].detach().reshape(-1) for k in keys])
            self.buffers[dtype].copy_(flat)
        self.version[0] = version + 2
        return version + 2

    def pull(self, network: torch.nn.Module, known_version: int) -> int:
        """Copies newer weights into `network`; returns the version it now holds."""
        for _ in range(3):
            before = int(self.version[0])
            if before == known_version or before % 2 == 1:
                return known_version
            copies = {dtype: buffer.clone() for dtype, buffer in self.buffers.items()}
            if int(self.version[0]) == before:
                _load_flat(network, copies, self.keys)
                return before
        return known_version


def _shared_keys(module: torch.nn.Module) -> list[str]:
    """The state_dict entries worth sharing: every floating tensor (not integer counters)."""
    return [k for k, v in module.state_dict().items() if torch.is_floating_point(v)]


def _group_by_dtype(state: Mapping[str, torch.Tensor], keys: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(str(state[key].dtype), []).append(key)
    return groups


@torch.no_grad()
def _load_flat(module: torch.nn.Module, flats: Mapping[str, torch.Tensor], keys: list[str]) -> None:
    state = module.state_dict()  # tensors that share storage with the module
    offsets = dict.fromkeys(flats, 0)
    for key in keys:
        target = state[key]
        dtype = str(target.dtype)
        size = target.numel()
        target.copy_(flats[dtype][offsets[dtype] : offsets[dtype] + size].view_as(target))
        offsets[dtype] += size


class ActorMessage(NamedTuple):
    """What an actor sends: new agent steps, finished games and agent-specific payloads."""

    actor_index: int
    num_steps: int
    payloads: list
    episode_returns: list[float]
    episode_lengths: list[int]
    # The actor's own checkpointable state (NGU's d_m², Agent57's bandits), or None.
    actor_state: dict | None = None
    # Agent-specific scalars since the last message, name -> values (NGU: returns per policy
    # index, intrinsic reward parts); the iteration's row holds the mean of each.
    statistics: dict[str, list[float]] | None = None


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    num_actors: int = 2
    """Actor processes, each stepping --num_envs environments with one batched network call per
    step and sending what it collects to the learner (R2D2 paper: 256 single-environment
    actors)."""
    actor_update_interval: int = 400  # Batch steps between weight pulls (paper: 400).
    """Steps of an actor (each steps all its environments once) between its fetches of the
    learner's latest weights (R2D2 paper: 400)."""
    replay_ratio: float = 1.0  # Samples learned per sample inserted.
    """Samples learned per sample inserted into replay, held both ways: the learner waits for
    data when ahead and actors wait when it is behind (the R2D2 paper's is set by its hardware,
    about 0.2)."""
    messages_in_flight: int = 8  # Per actor: the bound of its channel.
    """Messages an actor may have sent that the learner has not yet read; a full channel makes
    the actor wait, which bounds memory."""
    max_actor_restarts: int = 3  # Per actor, before the run stops.
    """Times one actor process that died is restarted (with a fresh seed) before the run stops
    with an error."""
    publish_period: int = 1  # Learner updates between weight publications.
    """Learner updates between publications of the weights to the shared memory that actors read."""
    wait_timeout_s: float = 1.0
    """Seconds the learner waits at most for actor messages when it may not learn yet, before it
    checks the actors' health again."""
    shutdown_timeout_s: float = 8.0
    """Seconds actors get to stop on their own when the run ends (their channels are drained
    meanwhile) before they are terminated."""
    learner_threads: int = 0  # Torch CPU threads of the learner; 0: the cores actors leave.
    """Torch CPU threads of the learner; 0 takes the cores the actor processes leave free."""

    def __post_init__(self) -> None:
        if self.num_actors < 1:
            raise UserError(f"num_actors must be at least 1, got {self.num_actors}")
        if self.replay_ratio <= 0:
            raise UserError(f"replay_ratio must be positive, got {self.replay_ratio}")
        if self.actor_update_interval < 1:
            raise UserError("actor_update_interval must be at least 1")


def _send_with_credit(writer, credits, message, stop_event, parent) -> bool:
    """Blocks (in 1 s slices) for a free slot in the actor's bounded channel, then sends."""
    while not credits.acquire(timeout=1.0):
        if stop_event.is_set() or not parent.is_alive():
            return False
    try:
        writer.send(message)
    except (BrokenPipeError, OSError):
        return False
    return True


def run_actor_loop(
    actor_index: int,
    seed: int,
    actor_factory,
    update_interval: int,
    initial_state: dict | None,
    pull_weights: Callable[[torch.nn.Module, int], int],
    send: Callable[[ActorMessage], bool],
    stopped: Callable[[], bool],
) -> None:
    """One actor's work, whatever carries its messages (both backends run it): build its
    environments and actor, act, `pull_weights(network, known_version) -> version` every
    `update_interval` steps, and `send` each message until `stopped()` or a send fails.

    `initial_state` is the actor's own state as its predecessor last reported it (after a
    restart or a resume); every message reports the current one.
    """
    env, actor = actor_factory(actor_index, seed)
    reports_state = hasattr(actor, "state_dict")
    if initial_state is not None and reports_state:
        actor.load_state_dict(initial_state)
    version = pull_weights(actor.network, -1)
    tracker = EpisodeTracker(env.num_envs)
    actor.reset()
    timestep = env.reset()
    batch_steps, unsent_steps = 0, 0
    try:
        while not stopped():
            timestep = env.step(actor.step(timestep))
            tracker.step(timestep)
            batch_steps += 1
            unsent_steps += env.num_envs
            if batch_steps % update_interval == 0:
                pulled = pull_weights(actor.network, version)
                if pulled != version and hasattr(actor, "weights_updated"):
                    actor.weights_updated()  # NGU refreshes its embedding per episode
                version = pulled
            payloads = actor.drain()
            if not payloads:
                continue
            message = ActorMessage(
                actor_index,
                unsent_steps,
                payloads,
                tracker.episode_returns,
                tracker.episode_lengths,
                actor.state_dict() if reports_state else None,
                actor.drain_statistics() if hasattr(actor, "drain_statistics") else None,
            )
            if not send(message):
                break
            unsent_steps = 0
            tracker.episode_returns, tracker.episode_lengths = [], []
    finally:
        env.close()


def actor_process_main(
    actor_index: int,
    seed: int,
    actor_factory,
    weights: SharedWeights,
    writer,
    credits,
    stop_event,
    update_interval: int,
    initial_state: dict | None = None,
) -> None:
    """Body of one actor process: the actor loop, reading weights from shared memory and
    sending through its bounded channel."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # The learner decides when actors stop.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)
    parent = std_mp.parent_process()

    def send(message: ActorMessage) -> bool:
        return _send_with_credit(writer, credits, message, stop_event, parent)

    try:
        run_actor_loop(
            actor_index,
            seed,
            actor_factory,
            update_interval,
            initial_state,
            weights.pull,
            send,
            stop_event.is_set,
        )
    finally:
        writer.close()


def start_without_sigint(process) -> None:
    """Starts a child process with SIGINT blocked: the child inherits the blocked mask, so a
    Ctrl-C to the process group cannot kill it mid-import with a traceback (the learner stops
    it), and the learner gets its own pending SIGINT as soon as the mask returns. Works from
    any thread (the mask is per thread, and the child inherits the starting thread's)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclasses.dataclass
class _ActorSlot:
    process: Any
    reader: Any
    credits: Any
    restarts: int = 0


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def check_restart_budget(index: int, restarts: int, max_restarts: int, cause: str) -> None:
    """Raises ActorFailure when actor `index`, found dead after `restarts` restarts, has none
    left; `cause` says how it died last (an exit code, a Ray error)."""
    if restarts >= max_restarts:
        raise ActorFailure(f"actor {index} died {_times(restarts + 1)} ({cause}); stopping the run")


class ActorPool:
    """Starts, supervises, restarts and stops the actor processes."""

    def __init__(self, config: ParallelConfig, actor_factory, weights: SharedWeights, seed: int):
        self.config = config
        self.actor_factory = actor_factory
        self.weights = weights
        self.seed = seed
        self.context = mp.get_context("spawn")
        self.stop_event = self.context.Event()
        self.slots: list[_ActorSlot] = []
        self.total_restarts = 0
        self.resume_point = 0  # Agent steps at the checkpoint a resumed run started from.
        # Each actor's latest reported own state, handed to its replacement or a resumed run.
        self.actor_states: dict[int, dict] = {}

    @property
    def actor_restarts(self) -> list[int]:
        """Restarts used by each actor, for checkpoints."""
        return [slot.restarts for slot in self.slots]

    def publish(self, network: torch.nn.Module) -> None:
        self.weights.publish(network)

    def start(self) -> None:
        for index in range(self.config.num_actors):
            self.slots.append(self._spawn(index, restarts=0))

    def _spawn(self, index: int, restarts: int) -> _ActorSlot:
        reader, writer = self.context.Pipe(duplex=False)
        credits = self.context.Semaphore(self.config.messages_in_flight)
        # A restarted actor must not replay its predecessor's random stream, nor a resumed
        # run the streams of the run it continues.
        seed = derive_seed(self.seed, "actor", self.resume_point, index, restarts)
        process = self.context.Process(
            target=actor_process_main,
            args=(
                index,
                seed,
                self.actor_factory,
                self.weights,
                writer,
                credits,
                self.stop_event,
                self.config.actor_update_interval,
                self.actor_states.get(index),
            ),
            name=f"actor-{index}",
            daemon=True,
        )
        start_without_sigint(process)
        writer.close()  # Only the child writes; closing ours lets the reader see EOF on death.
        return _ActorSlot(process, reader, credits, restarts)

    def check_health(self) -> list[str]:
        """Restarts dead actors; raises ActorFailure past the restart budget."""
        events = []
        for index, slot in enumerate(self.slots):
            if slot.process.is_alive():
                continue
            code = slot.process.exitcode
            check_restart_budget(
                index, slot.restarts, self.config.max_actor_restarts, f"last exit code {code}"
            )
            slot.reader.close()
            self.slots[index] = self._spawn(index, slot.restarts + 1)
            self.total_restarts += 1
            events.append(f"actor {index} died (exit code {code}); restarted")
        return events

    def receive(self, timeout: float) -> list[ActorMessage]:
        """Messages from every actor with one ready, waiting at most `timeout` seconds."""
        readers = {slot.reader: slot for slot in self.slots if not slot.reader.closed}
        messages = []
        for reader in mp_connection.wait(list(readers), timeout):
            slot = readers[reader]
            try:
                messages.append(reader.recv())
            except EOFError:
                reader.close()  # The actor exited or died mid-send; check_health replaces it.
                continue
            except Exception:
                # An interrupt stopped a read mid-message and left the channel mid-stream:
                # throw it away with its actor, which could otherwise block on credits forever.
                reader.close()
                slot.process.kill()
                continue
            slot.credits.release()
        return messages

    def stop(self) -> None:
        """Asks actors to stop, drains their channels so none blocks, then kills stragglers."""
        self.stop_event.set()
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        while any(s.process.is_alive() for s in self.slots) and time.monotonic() < deadline:
            self.receive(timeout=0.1)
        for slot in self.slots:
            if slot.process.is_alive():
                slot.process.terminate()
        for slot in self.slots:
            slot.process.join(timeout=2.0)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=2.0)
            slot.reader.close()


def process_pool(
    config: ParallelConfig, actor_factory, network: torch.nn.Module, seed: int
) -> ActorPool:
    """The default backend: actor processes on this machine, reading the learner's weights
    from shared memory."""
    return ActorPool(config, actor_factory, SharedWeights(network), seed)


class ActorPoolLike(Protocol):
    """How the learner side talks to its actors, whichever backend runs them: actor processes
    (ActorPool) or Ray actors (ray_backend.RayActorPool). The learner, the rate limiter,
    replay, checkpoints and statistics see only this."""

    total_restarts: int
    resume_point: int  # Agent steps at the checkpoint a resumed run started from.
    actor_states: dict[int, dict]  # Each actor's latest own state, for its replacement.

    @property
    def actor_restarts(self) -> list[int]: ...
    def start(self) -> None: ...
    def receive(self, timeout: float) -> list[ActorMessage]: ...
    def check_health(self) -> list[str]: ...
    def publish(self, network: torch.nn.Module) -> None: ...
    def stop(self) -> None: ...


# (config, actor factory, the learner's network, seed) -> a pool, not yet started.
PoolFactory = Callable[[ParallelConfig, Any, torch.nn.Module, int], ActorPoolLike]


class RateLimiter:
    """Holds learned samples within a fixed distance of `replay_ratio` × inserted samples.

    With target = replay_ratio × (samples inserted since replay first became ready):
    - a batch is learned only if afterwards learned <= target + tolerance, so the learner is
      never ahead of the ratio by more than `tolerance` samples;
    - data is taken in only while target − learned <= tolerance. Data arrive in messages; one
      intake pass reads at most one message per actor, M samples in all, so the learner is
      never behind by more than tolerance + replay_ratio × M samples.
    Both bounds are in samples and hold however long an update takes. (The earlier tolerance,
    4 batches × ratio, let a learner at ratio 4 run 16 updates ahead.) The default tolerance
    is one batch; anything >= half a batch keeps both sides from stalling each other: when
    intake is refused (target − learned > tolerance) a batch may be learned, and when learning
    is refused (learned > target + tolerance − batch) intake is allowed.

    Thread-safe: the intake thread inserts while the learner learns.
    """

    def __init__(self, replay_ratio: float, batch_size: int, tolerance: float | None = None):
        tolerance = batch_size if tolerance is None else tolerance
        if tolerance < batch_size / 2:
            raise ValueError(f"tolerance {tolerance} below half a batch ({batch_size}) stalls")
        self.ratio = replay_ratio
        self.batch_size = batch_size
        self.tolerance = tolerance
        self.inserted = 0
        self.learned = 0
        self._inserted_at_warm: int | None = None
        self._changed = threading.Condition()

    def _target(self) -> float:
        return self.ratio * (self.inserted - (self._inserted_at_warm or 0))

    def observe_ready(self, ready: bool) -> None:
        if ready and self._inserted_at_warm is None:
            with self._changed:
                self._inserted_at_warm = self.inserted
                self._changed.notify_all()

    def may_learn(self) -> bool:
        if self._inserted_at_warm is None:
            return False
        return self.learned + self.batch_size <= self._target() + self.tolerance

    def may_insert(self) -> bool:
        if self._inserted_at_warm is None:
            return True
        return self._target() - self.learned <= self.tolerance

    def add_inserted(self, count: int) -> None:
        with self._changed:
            self.inserted += count
            self._changed.notify_all()

    def add_learned(self, count: int) -> None:
        with self._changed:
            self.learned += count
            self._changed.notify_all()

    def wait_until_may_insert(self, timeout: float) -> bool:
        """Blocks until intake is allowed (or `timeout` seconds pass); returns whether it is."""
        with self._changed:
            return self._changed.wait_for(self.may_insert, timeout)

    def ratio_since_warm(self) -> float:
        """Learned samples per sample inserted since replay became ready (NaN before)."""
        if self._inserted_at_warm is None or self.inserted == self._inserted_at_warm:
            return math.nan
        return self.learned / (self.inserted - self._inserted_at_warm)

    def state_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "learned": self.learned}


class _Arrival(NamedTuple):
    """An actor message taken in by the intake thread."""

    message: ActorMessage
    items: list | None  # Its payloads assembled by `learner.assemble`; None: not assembled.


class IntakeThread:
    """Takes actor messages in, and assembles their payloads, beside the learner's updates.

    It supervises the actor pool (restarts happen here, within half a second of a death),
    reads every channel that has a message while the rate limiter allows intake, assembles
    the payloads when the learner can do that apart from storing them (`assemble`/`store`),
    and hands them to the learner thread through a bounded queue. The learner thread only
    stores what arrived between its updates. Actors therefore keep their channels flowing
    however long an update takes; when the learner falls behind the ratio, the thread stops
    reading and the actors block on their bounded channels.
    """

    def __init__(
        self,
        pool: ActorPoolLike,
        learner,
        limiter: RateLimiter,
        capacity: int,
        health_period_s: float = 0.5,
    ) -> None:
        self.pool = pool
        self.learner = learner
        self.limiter = limiter
        self.arrivals: queue.Queue[_Arrival] = queue.Queue(maxsize=capacity)
        self.events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.paused_seconds = 0.0  # Time held back by the rate limiter: actors are throttled.
        self.health_period_s = health_period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def raise_error(self) -> None:
        """Re-raises, in the learner thread, what stopped the intake thread (ActorFailure)."""
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            next_check = 0.0
            while not self._stop.is_set():
                if time.monotonic() >= next_check:
                    for event in self.pool.check_health():
                        self.events.put(event)
                    next_check = time.monotonic() + self.health_period_s
                if not self.limiter.may_insert():
                    paused = time.monotonic()
                    self.limiter.wait_until_may_insert(timeout=0.1)
                    self.paused_seconds += time.monotonic() - paused
                    continue
                for message in self.pool.receive(timeout=0.1):
                    self._put(self._assemble(message))
        except BaseException as error:  # Handed to the learner thread.
            self.error = error

    def _assemble(self, message: ActorMessage) -> _Arrival:
        if not hasattr(self.learner, "assemble"):
            return _Arrival(message, None)
        items = self.learner.assemble(message.payloads)
        self.limiter.add_inserted(len(items))
        return _Arrival(message._replace(payloads=[]), items)

    def _put(self, arrival: _Arrival) -> None:
        while not self._stop.is_set():
            try:
                self.arrivals.put(arrival, timeout=0.1)
                return
            except queue.Full:
                continue


class LearnerThreads:
    """The learner's torch CPU threads: the cores the actor processes leave, and, while the
    rate limiter holds the actors back (they then sit blocked on their channels), every core
    if that makes updates faster.

    Whether it does depends on the machine: on cores shared with other work, torch's spinning
    worker threads can make a two-thread update several times slower than a one-thread one.
    So while actors are throttled it times updates with both counts (a moving average of each),
    uses the faster, and tries the other again every `explore_every` updates. It never takes
    more than OMP_NUM_THREADS when that is set.
    """

    def __init__(self, fixed: int, num_actors: int, explore_every: int = 50) -> None:
        cores = len(os.sched_getaffinity(0))
        cap = int(os.environ.get("OMP_NUM_THREADS") or cores)
        self.shared = fixed or max(1, min(cap, cores - num_actors))
        self.all = fixed or max(1, min(cap, cores))
        self.explore_every = explore_every
        self.current = 0
        self._seconds: dict[int, float] = {}  # Threads -> moving average of an update's time.
        self._timed: dict[int, int] = {}
        self._throttled_updates = 0

    def use(self, actors_throttled: bool) -> int:
        """Sets (and returns) the thread count for the next update."""
        wanted = self.shared
        if actors_throttled and self.all != self.shared:
            self._throttled_updates += 1
            wanted = self._choose()
        if wanted != self.current:
            torch.set_num_threads(wanted)
            self.current = wanted
        return wanted

    def record(self, threads: int, seconds: float) -> None:
        """The duration of an update made with `threads` threads."""
        count = self._timed.get(threads, 0)
        self._timed[threads] = count + 1
        if count == 0:
            return  # The first update of a count pays for warming its thread pool.
        previous = self._seconds.get(threads, seconds)
        self._seconds[threads] = 0.7 * previous + 0.3 * seconds

    def _choose(self) -> int:
        candidates = (self.all, self.shared)
        for threads in candidates:
            if self._timed.get(threads, 0) < 3:
                return threads
        faster = min(candidates, key=lambda n: self._seconds[n])
        if self._throttled_updates % self.explore_every == 0:
            return self.shared if faster == self.all else self.all
        return faster


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

    def _ingest(self, arrival: _Arrival, games: EpisodeTracker, per_actor) -> None:
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
                evaluation.begin(iteration, iteration_start, scalars, trainer.learner.network)
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

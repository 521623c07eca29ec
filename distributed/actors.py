"""Actor processes: the loop each actor runs, its bounded channel to the learner, and the pool
that starts, supervises, restarts and stops them.

Actors run in spawned processes; each steps a batch of environments with batched CPU inference
and sends its finished sequences (already compressed) to the learner. Design choices, each
against a failure mode seen in public implementations:
- One pipe per actor with a credit semaphore instead of one shared queue: an actor killed in
  the middle of a write can only break its own channel, which is thrown away with it.
- Weights go through one shared-memory tensor guarded by a seqlock (a version counter that is
  odd while the learner writes). Readers never take a lock, so an actor killed mid-read
  cannot block the learner.
- Every wait has a timeout; the learner blocks in `connection.wait` only when it has nothing
  to learn from, so there is no busy-waiting.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as std_mp
import signal
import time
from collections.abc import Callable
from multiprocessing import connection as mp_connection
from typing import Any, NamedTuple, Protocol

import torch
import torch.multiprocessing as mp

from distributed.config import ParallelConfig
from distributed.shared_weights import SharedWeights
from experiment.errors import UserError
from experiment.seeding import derive_seed
from tracker import EpisodeTracker


class ActorFailure(UserError):
    """An actor died more often than allowed."""


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

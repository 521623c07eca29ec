"""Intake beside learning: the thread that takes actor messages in while the learner updates,
and the rate limiter that holds learned samples to the replay ratio."""

from __future__ import annotations

import math
import queue
import threading
import time
from typing import NamedTuple

from distributed.actors import ActorMessage, ActorPoolLike


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


class Arrival(NamedTuple):
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
        self.arrivals: queue.Queue[Arrival] = queue.Queue(maxsize=capacity)
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

    def _assemble(self, message: ActorMessage) -> Arrival:
        if not hasattr(self.learner, "assemble"):
            return Arrival(message, None)
        items = self.learner.assemble(message.payloads)
        self.limiter.add_inserted(len(items))
        return Arrival(message._replace(payloads=[]), items)

    def _put(self, arrival: Arrival) -> None:
        while not self._stop.is_set():
            try:
                self.arrivals.put(arrival, timeout=0.1)
                return
            except queue.Full:
                continue

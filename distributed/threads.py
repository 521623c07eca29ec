"""How many torch CPU threads the learner uses beside the actor processes."""

from __future__ import annotations

import os

import torch


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

"""Batches made ahead of the learner: sampling stays in the learner thread, in order, and
worker threads do the expensive part (snappy decoding, stacking, layout, the copy to the
device) `depth` batches ahead, through a bounded queue of futures.

Why threads: snappy's decompression releases the GIL, so decoding in two threads runs on two
cores (benchmarks/bench_prefetch.py measures it). Why sample in the learner thread: priorities
reach replay in order (each `next()` samples after every update before it was applied), and a
run samples the same slots whatever the number of workers, so `num_workers=0` (everything in
the learner thread, at the same points) gives exactly the same batches.

With depth d, batch k is sampled just after update k − d − 1: its priorities are d updates
old, as in any asynchronous replay (Ape-X, R2D2). depth=0 is today's synchronous path.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np


class BatchPrefetcher:
    """Yields (batch, keys [B], IS weights [B]) for the learner, `depth` batches ahead.

    replay: has sample_items(batch_size, exponent) -> (items, keys, weights) and
      batch_of(items, compact=True) -> batch; the items must be immutable.
    convert: turns a replay batch into what the learner consumes (e.g. tensors on its device,
      through pinned memory on CUDA); runs in the worker.
    """

    def __init__(
        self,
        replay,
        batch_size: int,
        importance_sampling_exponent: float,
        convert: Callable[[Any], Any],
        num_workers: int = 2,
        depth: int = 2,
    ) -> None:
        if num_workers < 0 or depth < 0:
            raise ValueError(f"need num_workers >= 0 and depth >= 0, got {num_workers}, {depth}")
        self.replay = replay
        self.batch_size = batch_size
        self.exponent = importance_sampling_exponent
        self.convert = convert
        self.depth = depth
        self._workers = ThreadPoolExecutor(num_workers, "prefetch") if num_workers else None
        self._queue: collections.deque[Future] = collections.deque()

    def next(self) -> tuple[Any, np.ndarray, np.ndarray]:
        """The oldest batch in flight (waiting for it if need be), after sampling enough new
        ones to keep `depth` more in flight."""
        while len(self._queue) < self.depth + 1:
            self._queue.append(self._submit())
        return self._queue.popleft().result()

    def _submit(self) -> Future:
        items, keys, weights = self.replay.sample_items(self.batch_size, self.exponent)
        if self._workers is None:
            done: Future = Future()
            done.set_result(self._make(items, keys, weights))
            return done
        return self._workers.submit(self._make, items, keys, weights)

    def _make(self, items, keys: np.ndarray, weights: np.ndarray):
        return self.convert(self.replay.batch_of(items, compact=True)), keys, weights

    def close(self) -> None:
        """Drops the batches in flight and stops the workers (no thread is left behind)."""
        for future in self._queue:
            future.cancel()
        self._queue.clear()
        if self._workers is not None:
            self._workers.shutdown(wait=True, cancel_futures=True)
            self._workers = None

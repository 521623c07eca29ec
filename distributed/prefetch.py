"""Batches made ahead of the learner: sampling stays in the learner thread, in order, and
worker threads do the expensive part (snappy decoding, stacking, layout, the copy to the
device) `depth` batches ahead, through a bounded queue of futures.

Why each thread has a decoding process: cramjam releases the GIL inside each frame's
decompression, but the loop over thousands of frames holds it, so threads alone decoded no
faster than one (benchmarks/bench_prefetch.py; see docs/results.md). With `decoder_factory`,
each worker thread hands its batch's compressed frames to its own process
(frame_decoding.ProcessFrameDecoder) and waits without the GIL; the layout and the device copy
(torch releases the GIL) stay in the thread. Why sample in the learner thread: priorities
reach replay in order (each `next()` samples after every update before it was applied), and a
run samples the same slots whatever the number of workers, so `num_workers=0` (everything in
the learner thread, at the same points) gives exactly the same batches.

With depth d, batch k is sampled just after update k − d − 1: its priorities are d updates
old, as in any asynchronous replay (Ape-X, R2D2). depth=0 is today's synchronous path.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from distributed.frame_decoding import FrameDecoder


class BatchPrefetcher:
    """Yields (batch, keys [B], IS weights [B]) for the learner, `depth` batches ahead.

    replay: has sample_items(batch_size, exponent) -> (items, keys, weights) and
      batch_of(items, compact=True, decoder=None) -> batch; the items must be immutable.
    convert: turns a replay batch into what the learner consumes (e.g. tensors on its device,
      through pinned memory on CUDA); runs in the worker. With a decoder, the batch's frames
      live in the decoder's buffer until that worker's next batch: convert must copy them (a
      device transfer or a gather does).
    decoder_factory: makes one frame decoder per worker thread (replay.batch_of's `decoder`),
      or None; without one, the worker threads decode themselves. Unused without workers.
    """

    def __init__(
        self,
        replay,
        batch_size: int,
        importance_sampling_exponent: float,
        convert: Callable[[Any], Any],
        num_workers: int = 2,
        depth: int = 2,
        decoder_factory: Callable[[], FrameDecoder | None] | None = None,
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
        self._decoder_factory = decoder_factory if num_workers else None
        self._local = threading.local()
        self._decoders: list = []
        self._decoders_lock = threading.Lock()

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
        batch = self.replay.batch_of(items, compact=True, decoder=self._thread_decoder())
        return self.convert(batch), keys, weights

    def _thread_decoder(self) -> FrameDecoder | None:
        """This worker thread's decoder, made at its first batch."""
        if self._decoder_factory is None:
            return None
        if not hasattr(self._local, "decoder"):
            decoder = self._local.decoder = self._decoder_factory()
            if decoder is not None:  # None: the factory has nothing to decode elsewhere
                with self._decoders_lock:
                    self._decoders.append(decoder)
        return self._local.decoder

    def close(self) -> None:
        """Drops the batches in flight and stops the workers and their decoders (no thread
        or process is left behind)."""
        for future in self._queue:
            future.cancel()
        self._queue.clear()
        if self._workers is not None:
            self._workers.shutdown(wait=True, cancel_futures=True)
            self._workers = None
        with self._decoders_lock:
            decoders, self._decoders = self._decoders, []
        for decoder in decoders:
            decoder.close()

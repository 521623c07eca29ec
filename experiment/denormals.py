"""Flushing denormal floats to zero on the CPU, for the process that learns.

A float32 below 1.2e-38 is denormal, and on x86 every arithmetic operation that reads or
writes one takes a slow path, tens of times slower than a normal one. Adam's and RMSProp's
moments of an input that is rarely on (most of MinAtar's bool planes, at most positions) decay
geometrically once its gradient stops, and pass through that range for hundreds (first moment)
or tens of thousands (second moment) of updates. A small network's update then spends much of
its time there: DQN with an MLP on MinAtar Breakout ran 1.2-1.4x faster with flushing on
(docs/results.md, "Speed and memory").

Flushing sets the CPU's FTZ and DAZ modes: results and inputs below that range read as 0. The
modes belong to the calling thread; threads it starts afterwards (torch's intra-op pool, the
prefetch threads) inherit them, so a run sets them first, before any torch work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def flush_denormals(enabled: bool) -> bool:
    """Turns flushing on or off for this thread (and the threads it starts later). Returns
    whether the CPU supports it; where it does not (outside x86), arithmetic stays IEEE."""
    return bool(torch.set_flush_denormal(enabled))


@contextlib.contextmanager
def denormals_flushed() -> Iterator[bool]:
    """Flushing on inside the block, off (the IEEE default) after it; yields whether the CPU
    supports it. For a worker that runs one job with a run's settings and then others."""
    try:
        yield flush_denormals(True)
    finally:
        flush_denormals(False)

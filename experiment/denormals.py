"""Flushing denormal floats to zero on the CPU, for the process that learns.

A float32 below 1.18e-38 is denormal, and on many CPUs an operation that reads or writes one
takes a slow path. An optimiser's moments of an input that is rarely on (most of MinAtar's bool
planes, at most positions) decay geometrically once its gradient stops, and with
round-to-nearest they do not reach 0: they stay a few units of the last place above it, in the
denormal range, until the input is active again. A small network's update can then spend much
of its time on the slow path; docs/results.md ("Speed and memory") has what flushing gave.

Flushing sets the CPU's FTZ and DAZ modes (x86; FZ on ARM): results and inputs in that range
read as 0. The modes belong to the calling thread, and threads it starts afterwards (torch's
intra-op pool, the prefetch threads) inherit them on Linux; threads already running keep their
own. So a run sets them first, before any torch work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def flush_denormals(enabled: bool) -> bool:
    """Turns flushing on or off for this thread (and the threads it starts later). Returns
    whether the CPU supports it; where it does not, arithmetic stays IEEE."""
    return bool(torch.set_flush_denormal(enabled))


@contextlib.contextmanager
def denormals_flushed() -> Iterator[bool]:
    """Flushing on inside the block and off (the IEEE default) after it, whatever it was
    before; yields whether the CPU supports it. For a worker that runs one job with a run's
    settings and then others."""
    try:
        yield flush_denormals(True)
    finally:
        flush_denormals(False)

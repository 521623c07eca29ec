"""Seeds of a run's random streams, derived from the run's seed and what each stream is for.

Every consumer (an environment batch, an actor's exploration, a replay sampler, an actor
process, an evaluation) gets its own seed from `derive_seed(run_seed, name, *indices)`,
through numpy's SeedSequence, so no two streams are correlated the way `seed` and `seed + 1`
can be, and two consumers never share a generator by accident.

A resumed run passes the point it resumes from (agent steps at its checkpoint) among the
indices of every stream that the checkpoint does not restore: environments and actor
processes then continue with streams the run has not used, instead of replaying the first
iteration's episodes.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

# Environments seed their copy i with seed + i; this keeps seed + i a non-negative int32 for
# any number of copies up to 2**29.
_SEED_BITS = 30


def derive_seed(seed: int, name: str, *indices: int) -> int:
    """A seed in [0, 2**30) for the stream `name` (e.g. "replay") with integer `indices` (e.g.
    the resume point, the actor index, its restart count). Different names or indices give
    statistically independent streams."""
    entropy = [seed % 2**64, zlib.crc32(name.encode()), *(int(i) % 2**64 for i in indices)]
    word = np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0]
    return int(word) >> (32 - _SEED_BITS)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)

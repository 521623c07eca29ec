"""The learner's data path: batches of 64 x (40 + 80) Pong sequences made by worker threads.

    python benchmarks/bench_prefetch.py [--num_sequences 400] [--seconds 10]

data path: batches/s (sample, snappy-decode, lay out, as tensors; the stacking of the distinct
           frames happens on the GPU, in the learner) with 0 workers (the synchronous
           path), with 1 and 2 worker threads that each hand their frames to a decoding
           process (the learner's design), and with 2 threads decoding themselves (the
           GIL-bound design it replaced). Target: 2 workers >= 1.7x the synchronous path
           on 2 cores.
learner:   updates/s when the device step is replaced by a fixed 30 ms wait (as a GPU update
           would take), with the real data path and priority updates, against 1 / 30 ms.
           Target: >= 0.9 with the prefetching workers.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import queue
import sys
import time
import weakref

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import gym_env
from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner
from distributed.prefetch import BatchPrefetcher

ATARI = gym_env.AtariConfig("Pong", clip_rewards=False, full_action_space=True)
CPU = torch.device("cpu")


def filled_replay(config: R2d2Config, num_sequences: int):
    spec = gym_env.EnvSpec(atari=ATARI)
    env, actor = ActorFactory(config, spec, num_envs=16, num_actors=1)(0, seed=0)
    learner = build_learner(
        config, env.observation_shape, env.observation_dtype, env.num_actions, 0, CPU
    )
    timestep = env.reset()
    while learner.replay.size < num_sequences:
        timestep = env.step(actor.step(timestep))
        learner.ingest(actor.drain())
    env.close()
    return learner.replay


class ReusedHostBuffers:
    """Stand-in for CUDA's caching pinned-memory allocator, which serves a GPU learner's
    `pin_memory()` copies: the buffer of a batch that was dropped is reused, so the copy does
    not page-fault fresh memory every batch (a fresh 45 MB tensor per batch cost 29 ms here,
    a reused one a few)."""

    def __init__(self) -> None:
        self._free: queue.SimpleQueue[torch.Tensor] = queue.SimpleQueue()

    def copy(self, array: np.ndarray) -> torch.Tensor:
        source = torch.from_numpy(array)
        try:
            buffer = self._free.get_nowait()
        except queue.Empty:
            buffer = torch.empty(0, dtype=torch.uint8)
        if buffer.numel() < source.nbytes:
            buffer = torch.empty(source.nbytes, dtype=torch.uint8)
        out = buffer[: source.nbytes].view(source.dtype).view(source.shape)
        out.copy_(source)
        weakref.finalize(out, self._free.put, buffer)  # back to the pool with the batch
        return out


def compact_tensors(batch, buffers: ReusedHostBuffers) -> dict[str, torch.Tensor]:
    """What a worker hands a GPU learner: the compact batch as tensors (distinct frames and
    their stack index; the stacking itself happens on the GPU, so it is not timed here). The
    frames are copied out of the decoder's buffer, as a GPU learner's pinned-memory copy
    does."""
    arrays = {"frame_index": batch.frame_index, "mask": batch.mask} | batch.columns
    tensors = {name: torch.as_tensor(array) for name, array in arrays.items()}
    return tensors | {"frames": buffers.copy(batch.frames)}


def prefetcher(replay, config: R2d2Config, workers: int, processes: bool) -> BatchPrefetcher:
    depth = max(workers, 1) + 1 if workers else 0
    factory = functools.partial(replay.frame_decoder_for, config.batch_size) if processes else None
    convert = functools.partial(compact_tensors, buffers=ReusedHostBuffers())
    return BatchPrefetcher(
        replay, config.batch_size, 0.6, convert, workers, depth, decoder_factory=factory
    )


def rate(fn, seconds: float) -> float:
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls / (time.perf_counter() - start)


def bench_data_path(replay, config: R2d2Config, seconds: float) -> None:
    designs = {
        "synchronous (0 workers)": (0, False),
        "1 worker + decoding process": (1, True),
        "2 workers + decoding processes": (2, True),
        "2 threads decoding (GIL-bound)": (2, False),
    }
    rates = {}
    for label, (workers, processes) in designs.items():
        batches = prefetcher(replay, config, workers, processes)
        rates[label] = rate(batches.next, seconds)
        batches.close()
    print(f"data path: batches of {config.batch_size} x {config.burn_in}+{config.sequence_length}")
    baseline = rates["synchronous (0 workers)"]
    for label, value in rates.items():
        print(f"  {label:31s}: {value:6.2f} batches/s = {value / baseline:.2f}x synchronous")
    print("  (target: 2 workers >= 1.7x)")


def bench_learner(replay, config: R2d2Config, seconds: float, step_ms: float) -> None:
    rng = np.random.default_rng(0)
    print(f"learner: device step replaced by a {step_ms:.0f} ms wait; limit {1e3 / step_ms:.1f}/s")
    for workers in (0, 2):
        batches = prefetcher(replay, config, workers, processes=workers > 0)

        def update(batches=batches) -> None:
            _, keys, _ = batches.next()
            time.sleep(step_ms / 1e3)
            replay.update_priorities(keys, rng.random(len(keys)))

        value = rate(update, seconds)
        batches.close()
        print(
            f"  {workers} workers: {value:6.2f} updates/s = {value * step_ms / 1e3:.2f} of the "
            "limit (target >= 0.9 with workers)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_sequences", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--step_ms", type=float, default=30.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = R2d2Config(
        batch_size=args.batch_size,
        min_replay_size=args.batch_size,
        replay_capacity=max(args.num_sequences, args.batch_size),
    )
    replay = filled_replay(config, args.num_sequences)
    bench_data_path(replay, config, args.seconds)
    bench_learner(replay, config, args.seconds, args.step_ms)


if __name__ == "__main__":
    main()

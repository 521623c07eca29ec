"""Replay benchmarks.

1. Prioritized sample(64) + priority update(64) at capacity 1,000,000: `PrioritizedSampler`
   (sum tree) against a naive O(N) `rng.choice(p=...)` sampler, median milliseconds per rep.
2. Bytes per stored step of a compressed `TransitionReplay` filled with real Pong frames from
   random play, next to the raw 84x84 frame size; plus the cost of sampling a batch from it.

Targets: (1) <= 1 ms, (2) <= 600 bytes per step.

Usage: python benchmarks/bench_replay.py [--pong-steps 50000] [--capacity 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prioritized_sampler import PrioritizedSampler
from replay import TransitionReplay

BATCH_SIZE = 64
PRIORITY_EXPONENT = 0.6
IMPORTANCE_EXPONENT = 0.4
RAW_FRAME_BYTES = 84 * 84


class NaivePrioritizedSampler:
    """Baseline: one flat array of p^α, normalised and searched in full on every sample."""

    def __init__(self, priorities: np.ndarray, seed: int) -> None:
        self._values = priorities**PRIORITY_EXPONENT
        self._rng = np.random.default_rng(seed)

    def sample(self, batch_size: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        probabilities = self._values / self._values.sum()
        slots = self._rng.choice(probabilities.shape[0], size=batch_size, p=probabilities)
        weights = (np.count_nonzero(self._values) * probabilities[slots]) ** (-beta)
        return slots, (weights / weights.max()).astype(np.float32)

    def set_priorities(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        self._values[slots] = priorities**PRIORITY_EXPONENT


def median_ms(step: Callable[[], None], reps: int) -> float:
    """Median wall time of `step` over `reps` calls, in milliseconds."""
    times = np.empty(reps)
    for rep in range(reps):
        start = time.perf_counter()
        step()
        times[rep] = time.perf_counter() - start
    return float(np.median(times) * 1e3)


def sample_and_update(sampler, rng: np.random.Generator) -> Callable[[], None]:
    def step() -> None:
        slots, _ = sampler.sample(BATCH_SIZE, IMPORTANCE_EXPONENT)
        sampler.set_priorities(slots, rng.random(BATCH_SIZE) * 2)

    return step


def bench_prioritized_sampling(capacity: int, reps: int, naive_reps: int) -> None:
    rng = np.random.default_rng(0)
    priorities = rng.random(capacity) * 2 + 1e-3
    tree_sampler = PrioritizedSampler(capacity, PRIORITY_EXPONENT, seed=0)
    tree_sampler.set_priorities(np.arange(capacity), priorities)
    naive_sampler = NaivePrioritizedSampler(priorities, seed=0)

    tree_ms = median_ms(sample_and_update(tree_sampler, rng), reps)
    naive_ms = median_ms(sample_and_update(naive_sampler, rng), naive_reps)
    print(f"[1] PER sample({BATCH_SIZE}) + update_priorities({BATCH_SIZE}), capacity {capacity:,}")
    print(f"    sum tree      : {tree_ms:8.3f} ms  (median of {reps} reps; target <= 1 ms)")
    print(f"    naive choice  : {naive_ms:8.3f} ms  (median of {naive_reps} reps)")
    print(f"    speed-up      : {naive_ms / tree_ms:8.1f}x")


def fill_with_pong(replay: TransitionReplay, num_steps: int, seed: int) -> float:
    """Random play in Pong, every timestep added to `replay`; returns environment steps/s."""
    import ale_py  # deferred: only this part of the benchmark needs the emulator

    env = ale_py.AtariVectorEnv("pong", 1, reward_clipping=False)
    rng = np.random.default_rng(seed)
    num_actions = env.single_action_space.n
    observation, _ = env.reset(seed=seed)
    reward, discount = np.zeros(1), np.ones(1)
    first, last = np.ones(1, dtype=bool), np.zeros(1, dtype=bool)
    start = time.perf_counter()
    for _ in range(num_steps):
        action = rng.integers(num_actions, size=1)
        replay.add(observation, reward, discount, first, last, action)
        # Autoreset "next step": the call after a terminal one returns the new episode's start.
        first = last
        observation, reward, terminated, truncated, _ = env.step(action)
        last = terminated | truncated
        discount = np.where(terminated, 0.0, 1.0)
    env.close()
    return num_steps / (time.perf_counter() - start)


def bench_pong_storage(num_steps: int, capacity: int) -> None:
    replay = TransitionReplay(
        capacity=capacity,
        num_streams=1,
        observation_shape=(84, 84),
        observation_dtype=np.uint8,
        frame_stack=4,
        n_step=3,
        discount=0.99,
        compress=True,
        prioritized=True,
    )
    steps_per_second = fill_with_pong(replay, num_steps, seed=0)
    per_step = replay.bytes_per_stored_step()
    print(f"[2] Pong, {num_steps:,} random-play steps into a capacity-{capacity:,} replay")
    print(f"    filled at {steps_per_second:,.0f} steps/s (emulator included)")
    print(f"    stored steps  : {replay.num_stored_steps:,}, sampleable: {replay.size:,}")
    print(f"    memory        : {replay.memory_bytes() / 2**20:.1f} MiB")
    print(f"    bytes/step    : {per_step:8.1f}  (target <= 600)")
    print(f"    raw frame     : {RAW_FRAME_BYTES:8,d}")
    print(f"    raw/stored    : {RAW_FRAME_BYTES / per_step:8.1f}x")
    sample_ms = median_ms(lambda: replay.sample(32, IMPORTANCE_EXPONENT), 200)
    print(f"    sample(32)    : {sample_ms:8.3f} ms  (stacks rebuilt, frames decompressed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--naive-reps", type=int, default=50)
    parser.add_argument("--pong-steps", type=int, default=50_000)
    parser.add_argument("--pong-capacity", type=int, default=50_000)
    args = parser.parse_args()
    bench_prioritized_sampling(args.capacity, args.reps, args.naive_reps)
    bench_pong_storage(args.pong_steps, args.pong_capacity)


if __name__ == "__main__":
    main()

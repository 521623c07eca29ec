"""Sequence replay benchmark (R2D2's storage path).

Real Pong frames from random play on 4 environments go through the whole path — ChunkBuilder
(actor side, snappy) -> SequenceAssembler -> SequenceReplay — with R2D2's burn-in 40,
sequence 80, period 40, frame stack 4 and a [2, 512] recurrent state per step (zeros here).
Reports bytes per stored agent step next to the raw 84x84 frame size (target <= 1,000: every
frame stored once although ~3 overlapping sequences reference it, one state per chunk), and
the time of sample(64) (frames decoded, stacks rebuilt, [120, 64, 4, 84, 84] uint8 batch).

Usage: python benchmarks/bench_sequence_replay.py [--steps 30000] [--capacity 600]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sequence_replay import ChunkBuilder, SequenceAssembler, SequenceReplay

NUM_ENVS = 4
BURN_IN, SEQUENCE_LENGTH, PERIOD, FRAME_STACK = 40, 80, 40, 4
HIDDEN = 512
BATCH_SIZE = 64
RAW_FRAME_BYTES = 84 * 84
TARGET_BYTES_PER_STEP = 1_000


def fill_with_pong(
    replay: SequenceReplay, assembler: SequenceAssembler, num_steps: int, seed: int
) -> tuple[float, int]:
    """Random play, every agent step through ChunkBuilder -> assembler -> replay.

    Returns (agent steps per second including the emulator, sequences written).
    """
    import ale_py  # deferred: only the fill needs the emulator

    env = ale_py.AtariVectorEnv("pong", NUM_ENVS, reward_clipping=False, num_threads=2)
    rng = np.random.default_rng(seed)
    builders = [ChunkBuilder(e, assembler.chunk_length, compress=True) for e in range(NUM_ENVS)]
    state = np.zeros((2, HIDDEN), dtype=np.float32)
    observation, _ = env.reset(seed=seed)
    reward, discount = np.zeros(NUM_ENVS), np.ones(NUM_ENVS)
    first, last = np.ones(NUM_ENVS, dtype=bool), np.zeros(NUM_ENVS, dtype=bool)
    written = 0
    start = time.perf_counter()
    for _ in range(math.ceil(num_steps / NUM_ENVS)):
        action = rng.integers(env.single_action_space.n, size=NUM_ENVS)
        for e, builder in enumerate(builders):
            chunk = builder.append(
                observation[e, -1], action[e], reward[e], discount[e], first[e], last[e], state
            )
            sequences = assembler.add(chunk) if chunk is not None else []
            replay.add(sequences)
            written += len(sequences)
        # NEXT_STEP autoreset: the step after a terminal one returns the new episode's start.
        first = last
        observation, reward, terminated, truncated, _ = env.step(action)
        last = terminated | truncated
        discount = np.where(terminated, 0.0, 1.0)
    env.close()
    return num_steps / (time.perf_counter() - start), written


def median_ms(step, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30_000, help="agent steps, all envs")
    parser.add_argument("--capacity", type=int, default=600, help="sequences (ring wraps)")
    parser.add_argument("--sample-reps", type=int, default=10)
    args = parser.parse_args()

    assembler = SequenceAssembler(BURN_IN, SEQUENCE_LENGTH, PERIOD, FRAME_STACK)
    replay = SequenceReplay(
        capacity=args.capacity,
        burn_in=BURN_IN,
        sequence_length=SEQUENCE_LENGTH,
        frame_shape=(84, 84),
        frame_dtype=np.uint8,
        frame_stack=FRAME_STACK,
        compress=True,
        priority_exponent=0.9,
        seed=0,
    )
    steps_per_second, written = fill_with_pong(replay, assembler, args.steps, seed=0)
    stored_steps = replay.num_stored_steps()
    parts = replay.memory_breakdown()
    per_step = replay.bytes_per_stored_step()

    print(f"Pong, {args.steps:,} random-play agent steps on {NUM_ENVS} envs")
    print(f"    burn-in {BURN_IN}, sequence {SEQUENCE_LENGTH}, period {PERIOD}, ", end="")
    print(f"chunk {assembler.chunk_length}, frame stack {FRAME_STACK}, state [2, {HIDDEN}]")
    print(f"    filled at {steps_per_second:,.0f} steps/s (emulator + compression + assembly)")
    print(f"    sequences     : {written:,} written, {replay.size:,} stored ", end="")
    print(f"(capacity {args.capacity:,}), {stored_steps:,} distinct steps held")
    for name, value in parts.items():
        print(f"      {name:<8}    : {value / stored_steps:8.1f} bytes/step")
    print(f"    memory        : {replay.memory_bytes() / 2**20:.1f} MiB")
    print(f"    bytes/step    : {per_step:8.1f}  (target <= {TARGET_BYTES_PER_STEP:,})")
    print(f"    raw frame     : {RAW_FRAME_BYTES:8,d}")
    print(f"    raw/stored    : {RAW_FRAME_BYTES / per_step:8.1f}x")
    sample_ms = median_ms(lambda: replay.sample(BATCH_SIZE, 0.6), args.sample_reps)
    batch, _, _ = replay.sample(BATCH_SIZE, 0.6)
    observation = batch.observation
    shape = "x".join(map(str, observation.shape))
    size = f"{observation.nbytes / 2**20:.0f} MiB"
    print(
        f"    sample({BATCH_SIZE})    : {sample_ms:8.1f} ms  (median of {args.sample_reps}; ",
        end="",
    )
    print(f"observation {shape} {observation.dtype}, {size})")


if __name__ == "__main__":
    main()

"""Replay memory per stored MinAtar step: real [C, 10, 10] bool frames from random play of each
MinAtar game, stored bit-packed (np.packbits, then snappy) in DQN's `TransitionReplay` and in
R2D2's `SequenceReplay` (through the actors' chunks), next to the same frames stored as one
byte per value (uint8, snappy) in the same run, and the raw bool frame.

Target: <= 125 bytes of frame payload per step for Seaquest's 10 x 10 x 10 (its packed size).

Usage: python benchmarks/bench_minatar_replay.py [--steps 5000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gym_env
from agents.r2d2.agent import COLUMNS
from replay import TransitionReplay
from sequence_replay import ChunkBuilder, SequenceAssembler, SequenceReplay

GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
STATE_SIZE = 2 * 128  # the packed LSTM state R2D2 stores per chunk with the MinAtar torso


def random_play(game: str, steps: int, seed: int) -> list:
    """The timesteps of `steps` random actions on MinAtar/<game>-v1."""
    rng = np.random.default_rng(seed)
    with gym_env.EnvSpec(classic_name=f"MinAtar/{game}-v1").create(1, seed) as env:
        timesteps = [env.reset()]
        for _ in range(steps - 1):
            timesteps.append(env.step(rng.integers(0, env.num_actions, 1)))
        return timesteps


def transition_bytes(timesteps: list, dtype: type) -> tuple[float, float]:
    """(bytes per stored step, frame payload per step) of a DQN replay of the frames as `dtype`."""
    shape = timesteps[0].observation.shape[1:]
    replay = TransitionReplay(len(timesteps), 1, shape, dtype, 1, 3, 0.99, True, True)
    for t, ts in enumerate(timesteps):
        observation = ts.observation.astype(dtype)
        replay.add(observation, ts.reward, ts.discount, ts.first, ts.last, [t % 3])
    return replay.bytes_per_stored_step(), _frame_payload(replay) / replay.num_stored_steps


def _frame_payload(replay: TransitionReplay) -> int:
    """Bytes of the stored frames alone: the snappy payloads with their bytes objects' headers."""
    state = replay.state_dict()
    lengths = np.diff(state["frame_offsets"])
    return int(lengths.sum() + (lengths > 0).sum() * sys.getsizeof(b""))


def sequence_bytes(timesteps: list, dtype: type) -> float:
    """Bytes per stored step of R2D2's sequence replay (burn-in 40, length 80, period 40)."""
    shape = timesteps[0].observation.shape[1:]
    assembler = SequenceAssembler(40, 80, 40, frame_stack=1)
    builder = ChunkBuilder(0, assembler.chunk_length, compress=True, columns=COLUMNS)
    replay = SequenceReplay(len(timesteps), 40, 80, shape, dtype, 1, True, 0.9, 0, COLUMNS)
    state = np.zeros(STATE_SIZE, np.float32)
    for t, ts in enumerate(timesteps):
        values = {"action": t % 3, "reward": ts.reward[0], "discount": ts.discount[0]}
        first, last = bool(ts.first[0]), bool(ts.last[0])
        chunk = builder.append(ts.observation[0].astype(dtype), values, first, last, state)
        if chunk is not None:
            replay.add(assembler.add(chunk))
    return replay.bytes_per_stored_step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="random-play steps per game")
    args = parser.parse_args()
    print(f"bytes per stored step, {args.steps:,} random-play steps per game (MinAtar/<Game>-v1)")
    header = "game           C  raw  packed | DQN frame  DQN all | as uint8: frame  all | R2D2 all"
    print(header)
    for game in GAMES:
        timesteps = random_play(game, args.steps, seed=0)
        channels = timesteps[0].observation.shape[1]
        raw = channels * 100
        packed_all, packed_frame = transition_bytes(timesteps, np.bool_)
        byte_all, byte_frame = transition_bytes(timesteps, np.uint8)
        r2d2 = sequence_bytes(timesteps, np.bool_)
        print(
            f"{game:<13} {channels:>2} {raw:>5} {-(-raw // 8):>6} | {packed_frame:>9.1f} "
            f"{packed_all:>8.1f} | {byte_frame:>15.1f} {byte_all:>4.0f} | {r2d2:>8.1f}"
            f"   (packed frame {byte_frame / packed_frame:.2f}x smaller)"
        )


if __name__ == "__main__":
    main()

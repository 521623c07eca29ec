"""Every agent on every MinAtar game, end to end, through the commands a user types: a short
`python -m agents.<agent>.run_atari --environment_name=MinAtar/<Game>-<version>`, then
`python -m agents.<agent>.eval_agent` on its checkpoint, which plays whole games and records the
first to an mp4. Prints one row per run: the observation and action counts the checkpoint holds,
the seconds each command took, the evaluation's score line and the mp4's frame count and size.

    python benchmarks/minatar_smoke.py [--agents dqn ngu] [--games Breakout] [--versions v0 v1]

It checks plumbing, not learning: the runs are a few hundred steps with small replay and
batches (`minatar_learning.py` is the learning queue). A row whose command failed shows the
command's last error line, and the script exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import cv2
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
AGENTS = ("dqn", "r2d2", "ngu", "agent57")
GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
TRAIN_STEPS, EVAL_GAMES, EVAL_STEPS_PER_GAME = 400, 2, 200

# Small enough that the learner takes updates within a few hundred steps of one CPU core.
SMALL_RUN = {
    "dqn": ("--min_replay_size=100", "--replay_capacity=2000", "--batch_size=8"),
    "r2d2": (
        "--num_actors=1",
        "--num_envs=4",
        "--prefetch_workers=0",
        "--batch_size=4",
        "--min_replay_size=8",
        "--replay_capacity=200",
        "--burn_in=4",
        "--sequence_length=12",
        "--replay_period=6",
    ),
}
# Agent57's ladder of discounts needs at least 10 policies.
SMALL_RUN["ngu"] = (*SMALL_RUN["r2d2"], "--num_policies=10", "--episodic_memory_capacity=1000")
SMALL_RUN["agent57"] = SMALL_RUN["ngu"]


def run(agent: str, module: str, args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", f"agents.{agent}.{module}", *args],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result, time.monotonic() - started


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def video_frame_count(path: pathlib.Path) -> tuple[int, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    count, shape = 0, (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, shape = count + 1, frame.shape[:2]
    capture.release()
    return count, shape


def checkpoint_shapes(checkpoints: pathlib.Path) -> str:
    (path,) = checkpoints.rglob("iteration_0001.ckpt")
    metadata = torch.load(path, weights_only=True, map_location="cpu")["metadata"]
    return f"{list(metadata['observation_shape'])}, {metadata['num_actions']} actions"


def smoke(agent: str, environment: str, root: pathlib.Path) -> tuple[bool, str]:
    """Trains and evaluates one agent on one id under `root`; (ok, the row's cells)."""
    outputs = [f"--checkpoint_dir={root / 'checkpoints'}", f"--recording_dir={root / 'rec'}"]
    train, train_s = run(
        agent,
        "run_atari",
        [
            f"--environment_name={environment}",
            *SMALL_RUN[agent],
            "--num_iterations=1",
            f"--num_train_steps={TRAIN_STEPS}",
            "--num_eval_steps=0",
            "--seed=0",
            outputs[0],
            f"--tensorboard_dir={root / 'tb'}",
        ],
    )
    if train.returncode != 0:
        return False, f"train failed: {last_line(train.stderr)}"
    evaluation, eval_s = run(
        agent,
        "eval_agent",
        [
            f"--environment_name={environment}",
            *outputs,
            "--seed=0",
            f"--num_episodes={EVAL_GAMES}",
            f"--num_eval_steps={EVAL_STEPS_PER_GAME}",
        ],
    )
    if evaluation.returncode != 0:
        return False, f"eval failed: {last_line(evaluation.stderr)}"
    *_, score, video = evaluation.stdout.strip().splitlines()
    frames, (height, width) = video_frame_count(pathlib.Path(video))
    cells = (
        checkpoint_shapes(root / "checkpoints"),
        f"{train_s:.0f} s",
        f"{eval_s:.0f} s",
        ", ".join(score.split(": ", 1)[-1].split(", ")[:2]),  # "2 games, score m ± s"
        f"{frames} frames of {width}x{height}",
    )
    return frames > 1, " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument("--games", nargs="+", default=list(GAMES), choices=GAMES)
    parser.add_argument("--versions", nargs="+", default=["v1"], choices=["v0", "v1"])
    args = parser.parse_args()
    print("| agent | id | checkpoint | train | eval | eval_agent's score | mp4 |")
    print("|---|---|---|---:|---:|---|---|")
    failures = 0
    for agent in args.agents:
        for game in args.games:
            for version in args.versions:
                environment = f"MinAtar/{game}-{version}"
                with tempfile.TemporaryDirectory() as root:
                    ok, cells = smoke(agent, environment, pathlib.Path(root))
                failures += not ok
                print(f"| {agent} | {environment} | {cells} |", flush=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()

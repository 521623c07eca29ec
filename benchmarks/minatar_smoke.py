"""Every agent on every MinAtar game, end to end, through the commands a user types: a short
`python -m agents.<agent>.run_atari --environment_name=MinAtar/<Game>-<version>`, then
`python -m agents.<agent>.eval_agent` on its checkpoint, which plays whole games and records the
first to an mp4. A run passes when its checkpoint names the agent and the id and holds the game's
own planes and action count, and eval_agent's last line names the one mp4 it wrote, of at least
2 frames of 320 x 320. Prints one row per run: those shapes, the seconds each command took, the
evaluation's score and the mp4's frames.

    python benchmarks/minatar_smoke.py [--agents dqn ngu] [--games Breakout] [--versions v0 v1]

It checks plumbing, not learning: the runs are a few hundred steps with small replay and
batches (`minatar_learning.py` is the learning queue). A row that failed shows why in one line
(a command's last error line, or the check that failed), and the script exits with status 1.
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

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiment import checkpoint  # noqa: E402

AGENTS = ("dqn", "r2d2", "ngu", "agent57")
GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
TRAIN_STEPS, EVAL_GAMES, EVAL_STEPS_PER_GAME = 400, 2, 200
COMMAND_TIMEOUT_S = 600
# What each game's observation and action set must be (MinAtar's own definitions).
PLANES = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}
ACTIONS = {
    "v0": dict.fromkeys(GAMES, 6),
    "v1": {"Asterix": 5, "Breakout": 3, "Freeway": 3, "Seaquest": 6, "SpaceInvaders": 4},
}

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
# Agent57's ladder of discounts needs at least 10 policies; NGU gets the same family so that
# both intrinsic agents run the same small set-up.
SMALL_RUN["ngu"] = (*SMALL_RUN["r2d2"], "--num_policies=10", "--episodic_memory_capacity=1000")
SMALL_RUN["agent57"] = SMALL_RUN["ngu"]


def run(agent: str, module: str, args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """`python -m agents.<agent>.<module> args` from the repository root; (result, seconds)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", f"agents.{agent}.{module}", *args],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    return result, time.monotonic() - started


def last_line(text: str) -> str:
    """The last non-blank line of a command's output: its one-line error, if it failed."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def video_frames(path: pathlib.Path) -> tuple[int, tuple[int, int]]:
    """(frames, (height, width)) of an mp4, read back with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    count, shape = 0, (0, 0)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, shape = count + 1, frame.shape[:2]
    capture.release()
    return count, shape


class SmokeFailure(Exception):
    """One run's failure, shown as its row's one line."""


def check_checkpoint(checkpoints: pathlib.Path, agent: str, game: str, version: str) -> str:
    """The one checkpoint of the run: made by `agent` on this id, with the game's planes and
    action count. Returns its shapes for the row."""
    found = list(checkpoints.rglob("iteration_0001.ckpt"))
    if len(found) != 1:
        raise SmokeFailure(f"{len(found)} checkpoints of iteration 1, expected 1")
    channels, actions = PLANES[game], ACTIONS[version][game]
    expected = {
        "agent": agent,
        "environment_name": f"MinAtar/{game}-{version}",
        "observation_shape": [channels, 10, 10],
        "num_actions": actions,
    }
    try:
        checkpoint.load(found[0], expected)  # eval_agent's own check of the metadata
    except checkpoint.CheckpointError as error:
        raise SmokeFailure(str(error)) from None
    return f"{expected['observation_shape']}, {actions} actions"


def check_recording(stdout: str, recordings: pathlib.Path) -> str:
    """eval_agent's last line names the one mp4 it wrote, of MinAtar's 320 x 320 frames."""
    videos = list(recordings.glob("*.mp4"))
    if len(videos) != 1 or last_line(stdout) != str(videos[0]):
        raise SmokeFailure(f"mp4s {videos}, but eval_agent's last line is {last_line(stdout)!r}")
    frames, (height, width) = video_frames(videos[0])
    if frames < 2 or (height, width) != (320, 320):
        raise SmokeFailure(f"{videos[0].name} holds {frames} frames of {width}x{height}")
    return f"{frames} frames of {width}x{height}"


def score(stdout: str) -> str:
    """eval_agent's score line, shortened to "2 games, score m ± s"."""
    lines = stdout.strip().splitlines()
    line = lines[-2] if len(lines) >= 2 else ""
    return ", ".join(line.split(": ", 1)[-1].split(", ")[:2])


def smoke(agent: str, game: str, version: str, root: pathlib.Path) -> str:
    """Trains and evaluates one agent on one id under `root`; the row's cells. Raises
    SmokeFailure with a one-line reason."""
    environment = f"MinAtar/{game}-{version}"
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
        raise SmokeFailure(f"run_atari failed: {last_line(train.stderr)}")
    shapes = check_checkpoint(root / "checkpoints", agent, game, version)
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
        raise SmokeFailure(f"eval_agent failed: {last_line(evaluation.stderr)}")
    video = check_recording(evaluation.stdout, root / "rec")
    cells = (shapes, f"{train_s:.0f} s", f"{eval_s:.0f} s", score(evaluation.stdout), video)
    return " | ".join(cells)


def main() -> None:
    """Runs the chosen agents, games and versions in turn, printing a row as each ends."""
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
                with tempfile.TemporaryDirectory() as root:
                    try:
                        cells = smoke(agent, game, version, pathlib.Path(root))
                    except (SmokeFailure, subprocess.TimeoutExpired) as failure:
                        failures += 1
                        cells = f"**failed**: {failure} | | | |"
                print(f"| {agent} | MinAtar/{game}-{version} | {cells} |", flush=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()

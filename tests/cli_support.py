"""Helpers shared by the command-line tests: run `python -m agents.<agent>.<module>` from the
repository root as a subprocess, the flags of a tiny run, and reading back what a run leaves."""

from __future__ import annotations

import csv
import hashlib
import os
import pathlib
import subprocess
import sys
from collections.abc import Mapping

import cv2
import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 180

# --------------------------------------------------------------------------------------
# The flags of a tiny run
# --------------------------------------------------------------------------------------

# Small replay and batches, so that a run of a few hundred steps learns on the CPU: DQN's
# replay is warm after 100 steps, so the learner takes updates within the first iteration.
_DQN_TINY = (
    "--min_replay_size=100",
    "--replay_capacity=1000",
    "--batch_size=8",
    "--device=cpu",
)
# R2D2, NGU and Agent57: two actor processes of two environments each (the parallel loop in
# its smallest real form), and sequences of 8 burn-in and 16 learning steps.
_RECURRENT_TINY = (
    "--num_actors=2",
    "--num_envs=2",
    "--batch_size=4",
    "--min_replay_size=8",
    "--replay_capacity=100",
    "--burn_in=8",
    "--sequence_length=16",
    "--replay_period=8",
    "--device=cpu",
)
# NGU and Agent57 add their policy family and an episodic memory, both small.
_INTRINSIC_TINY = (*_RECURRENT_TINY, "--num_policies=10", "--episodic_memory_capacity=500")
# The seed names the run's directory (seed_<n>), which the tests read back: DQN's and the
# intrinsic agents' tests look under seed_3, R2D2's under seed_5.
_TINY = {
    "dqn": (*_DQN_TINY, "--seed=3"),
    "r2d2": (*_RECURRENT_TINY, "--seed=5"),
    "ngu": (*_INTRINSIC_TINY, "--seed=3"),
    "agent57": (*_INTRINSIC_TINY, "--seed=3"),
}


def tiny_flags(agent: str) -> list[str]:
    """The flags of a tiny run of `agent`, seed included. They set no iteration, training or
    evaluation step counts: each test sets its own."""
    return list(_TINY[agent])


def as_flags(values: Mapping[str, object]) -> list[str]:
    """{"checkpoint_dir": path} -> ["--checkpoint_dir=path"]."""
    return [f"--{name}={value}" for name, value in values.items()]


def output_dirs(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Where a run under `root` writes its checkpoints and TensorBoard scalars, by flag name."""
    return {"checkpoint_dir": root / "checkpoints", "tensorboard_dir": root / "tb"}


def output_flags(root: pathlib.Path) -> list[str]:
    """The flags of output_dirs(root)."""
    return as_flags(output_dirs(root))


# --------------------------------------------------------------------------------------
# Running a command line
# --------------------------------------------------------------------------------------


def subprocess_env() -> dict[str, str]:
    # One intra-op thread: on a small machine shared with other processes (actors, other
    # tests), torch's OpenMP threads spin against them and slow every learner step many times
    # over (docs/results.md, "CPU threads on a small, shared machine").
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def command(agent: str, module: str, args: list) -> list[str]:
    return [sys.executable, "-m", f"agents.{agent}.{module}", *[str(a) for a in args]]


def run_module(
    agent: str,
    module: str,
    args: list,
    timeout: float = TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(agent, module, args),
        cwd=REPO,
        env=subprocess_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_module(
    agent: str,
    module: str,
    args: list,
    log_path: pathlib.Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    """Starts the command line in the background, its output into log_path, in a process group
    of its own (as a shell starts a job), so that a test can Ctrl-C the whole job."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            command(agent, module, args),
            cwd=REPO,
            env=subprocess_env() if env is None else env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def check_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The command-line contract for bad input: exit code 2, no traceback, and stderr is one
    `error: ...` line, which is returned."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def final_error_line(result: subprocess.CompletedProcess) -> str:
    """The contract for a run that fails after it started logging (a resume, a checkpoint
    write): exit code 2, no traceback, and one `error: ...` line, the last; it is returned."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    return errors[0]


# --------------------------------------------------------------------------------------
# What a run leaves
# --------------------------------------------------------------------------------------


def read_csv(path: pathlib.Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_checkpoint(path: pathlib.Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def digests(root: pathlib.Path) -> dict[str, str]:
    """sha256 of every file under root: proof that nothing saved was touched."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def video_frames(path: pathlib.Path) -> list[np.ndarray]:
    """Every frame of a video file, as cv2 reads it (BGR)."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames

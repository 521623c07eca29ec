"""Helpers shared by the command-line tests: run `python -m agents.<agent>.<module>` from the
repository root as a subprocess and read back what a run leaves."""

from __future__ import annotations

import csv
import os
import pathlib
import subprocess
import sys

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 180


def subprocess_env() -> dict[str, str]:
    # One intra-op thread: on 2 shared cores, torch's OpenMP threads spin against the other
    # processes (actors, other tests) and a learner step gets ~20x slower.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def command(agent: str, module: str, args: list) -> list[str]:
    return [sys.executable, "-m", f"agents.{agent}.{module}", *[str(a) for a in args]]


def run_module(
    agent: str, module: str, args: list, timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(agent, module, args),
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"


def read_csv(path: pathlib.Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_checkpoint(path: pathlib.Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)

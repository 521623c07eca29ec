"""What a run is (agent, game, seed), recorded in a small JSON file beside its results CSV.

`checkpoints/dqn/Pong/seed_1/results.csv` has `checkpoints/dqn/Pong/seed_1/results.run.json`:

    {"agent": "dqn", "environment_name": "Pong", "seed": 1, "frames_per_step": 4,
     "num_iterations": 10, "format_version": 1}

The report groups runs by this record, never by guessing from paths, so a CSV written
anywhere with `--results_csv_path` is still reported under its agent, game and seed.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from experiment.checkpoint import atomic_write
from experiment.errors import UserError

FORMAT_VERSION = 1
SUFFIX = ".run.json"


class RunRecordError(UserError):
    """A run record is missing, unreadable, or belongs to another run."""


@dataclasses.dataclass(frozen=True)
class RunRecord:
    agent: str  # "dqn", "r2d2"
    environment_name: str  # "Pong"
    seed: int
    frames_per_step: int  # environment frames per agent step: the action repeat (4 on Atari)
    num_iterations: int  # iterations asked for; a CSV with fewer rows is an unfinished run
    label: str = ""  # --run_label: which configuration of the agent ("" in older records)

    @property
    def variant(self) -> str:
        """The agent and its label, as the report names it: "ngu" or "ngu-nstep3"."""
        return f"{self.agent}-{self.label}" if self.label else self.agent

    @property
    def identity(self) -> tuple[str, str, int]:
        return (self.variant, self.environment_name, self.seed)

    def describe(self) -> str:
        return f"{self.variant} on {self.environment_name} with seed {self.seed}"


def record_path(csv_path: pathlib.Path) -> pathlib.Path:
    """`results.csv` -> `results.run.json`, in the same directory."""
    return pathlib.Path(csv_path).with_suffix(SUFFIX)


def claim(csv_path: pathlib.Path, record: RunRecord) -> None:
    """Writes the record beside `csv_path`. Refuses (one line) when the record already there
    names another agent, game or seed: that CSV holds another run's results.

    A resumed run rewrites its own record, so a new --num_iterations is recorded.
    """
    path = record_path(csv_path)
    if path.exists():
        existing = read(csv_path)
        if existing.identity != record.identity:
            raise RunRecordError(
                f"{csv_path} holds the results of {existing.describe()} (see {path.name}), "
                f"not of {record.describe()}; choose another --results_csv_path"
            )
    text = json.dumps({**dataclasses.asdict(record), "format_version": FORMAT_VERSION})
    atomic_write(path, lambda temp: pathlib.Path(temp).write_text(text + "\n"))


def read(csv_path: pathlib.Path) -> RunRecord:
    """The record beside `csv_path`; RunRecordError with one line when missing or malformed."""
    path = record_path(csv_path)
    if not path.is_file():
        raise RunRecordError(
            f"{csv_path} has no run record {path.name} beside it: it was not written by a "
            "training run of this library (or by one older than run records)"
        )
    try:
        fields = json.loads(path.read_text())
        return _from_fields(fields)
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise RunRecordError(f"run record {path} is malformed ({_reason(error)})") from None


def _from_fields(fields: Any) -> RunRecord:
    if not isinstance(fields, dict):
        raise TypeError("not a JSON object")
    if fields.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format version {fields.get('format_version')!r}")
    record = RunRecord(
        agent=str(fields["agent"]),
        environment_name=str(fields["environment_name"]),
        seed=int(fields["seed"]),
        frames_per_step=int(fields["frames_per_step"]),
        num_iterations=int(fields["num_iterations"]),
        label=str(fields.get("label", "")),
    )
    if record.frames_per_step < 1 or record.num_iterations < 1:
        raise ValueError("frames_per_step and num_iterations must be positive")
    return record


def _reason(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__

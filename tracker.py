"""Statistics: episode returns over whole games, rates, learner scalars; TensorBoard and CSV.

Returns are summed from `TimeStep.raw_reward` between a `first` and a `last` step, so a lost
life never splits a game and reward clipping never shrinks a reported score.
"""

from __future__ import annotations

import csv
import io
import math
import pathlib
import time
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from experiment.checkpoint import atomic_write


class EpisodeTracker:
    """Per-environment running return and length; collects every finished game."""

    def __init__(self, num_envs: int) -> None:
        self._returns = np.zeros(num_envs, np.float64)
        self._lengths = np.zeros(num_envs, np.int64)
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self.num_steps = 0

    def step(self, timestep) -> None:
        """Accounts one batched TimeStep (observation after the previous action)."""
        first = timestep.first
        self._returns[first] = 0.0
        self._lengths[first] = 0
        # A first step carries no reward and is not an agent step of the finished game.
        mid = ~first
        self._returns[mid] += timestep.raw_reward[mid]
        self._lengths[mid] += 1
        self.num_steps += int(mid.sum())
        for env in np.flatnonzero(timestep.last):
            self.episode_returns.append(float(self._returns[env]))
            self.episode_lengths.append(int(self._lengths[env]))

    def take_statistics(self, prefix: str) -> dict[str, float]:
        """Statistics of the games finished since the last call; games in progress carry on."""
        stats = self.statistics(prefix)
        self.episode_returns, self.episode_lengths = [], []
        return stats

    def statistics(self, prefix: str) -> dict[str, float]:
        returns = self.episode_returns
        return {
            f"{prefix}/num_episodes": len(returns),
            f"{prefix}/episode_return": float(np.mean(returns)) if returns else math.nan,
            f"{prefix}/episode_return_min": float(np.min(returns)) if returns else math.nan,
            f"{prefix}/episode_return_max": float(np.max(returns)) if returns else math.nan,
            f"{prefix}/episode_length": float(np.mean(self.episode_lengths))
            if returns
            else math.nan,
        }


class ScalarAverager:
    """Means of scalars reported many times in an iteration (loss, Q-values...)."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, scalars: Mapping[str, float]) -> None:
        for key, value in scalars.items():
            self._sums[key] += float(value)
            self._counts[key] += 1

    def means(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/{k}": self._sums[k] / self._counts[k] for k in sorted(self._sums)}


class RateTracker:
    """Steps per second since construction, and an estimate of the time left."""

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.start = time.monotonic()

    def rate(self, steps_done: int) -> float:
        return steps_done / max(time.monotonic() - self.start, 1e-9)

    def seconds_left(self, steps_done: int) -> float:
        rate = self.rate(steps_done)
        return (self.total_steps - steps_done) / rate if rate > 0 else math.inf


class ProgressPrinter:
    """A progress line with steps/s and the time left, at most every `period_s` seconds."""

    def __init__(self, label: str, total_steps: int, period_s: float = 30.0, log=print) -> None:
        self.label = label
        self.rates = RateTracker(total_steps)
        self.period_s = period_s
        self._next = time.monotonic() + period_s
        self._log = log

    def update(self, steps_done: int) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.period_s
        left = self.rates.seconds_left(steps_done)
        self._log(
            f"{self.label}: {steps_done}/{self.rates.total_steps} steps, "
            f"{self.rates.rate(steps_done):.0f} steps/s, {format_duration(left)} left"
        )


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


class MetricsWriter:
    """One CSV row and one set of TensorBoard scalars per iteration.

    Each row also records the environment frames (agent steps x `frames_per_step`, the action
    repeat: 4 on Atari, 1 elsewhere), because papers plot against frames.

    On resume from iteration k, rows after k (written by the killed run after its last
    checkpoint) are dropped so the CSV never holds an iteration twice, and TensorBoard events
    after the resumed step are purged.
    """

    def __init__(
        self,
        csv_path: pathlib.Path | None,
        tensorboard_dir: pathlib.Path | None,
        resume_iteration: int = 0,
        resume_step: int | None = None,
        frames_per_step: int = 1,
    ) -> None:
        self.frames_per_step = frames_per_step
        self.csv_path = pathlib.Path(csv_path) if csv_path else None
        self._rows: list[dict[str, str]] = []
        if self.csv_path and self.csv_path.exists() and resume_iteration > 0:
            with open(self.csv_path, newline="") as f:
                rows = list(csv.DictReader(f))
            self._rows = [r for r in rows if int(r["iteration"]) <= resume_iteration]
        self._writer = None
        if tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            # TensorBoard hides events at steps >= purge_step. The resumed iteration's own
            # scalars sit at resume_step and must stay: purge from the step after it.
            purge_step = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(str(tensorboard_dir), purge_step=purge_step)

    def write(self, iteration: int, step: int, scalars: Mapping[str, float]) -> None:
        frames = step * self.frames_per_step
        row = {"iteration": str(iteration), "step": str(step), "frames": str(frames)}
        row.update({k: _format(v) for k, v in scalars.items()})
        self._rows.append(row)
        if self.csv_path:
            self._write_csv()
        if self._writer:
            self._writer.add_scalar("frames", frames, step)
            for key, value in scalars.items():
                if value is not None and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def has_row(self, iteration: int) -> bool:
        """Whether the CSV already holds `iteration` (e.g. a resumed run's last one)."""
        return any(int(row["iteration"]) == iteration for row in self._rows)

    def _write_csv(self) -> None:
        fields: list[str] = []
        for row in self._rows:
            fields.extend(k for k in row if k not in fields)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(self._rows)
        text = buffer.getvalue()
        atomic_write(self.csv_path, lambda temp: pathlib.Path(temp).write_text(text))

    def close(self) -> None:
        if self._writer:
            self._writer.close()


def _format(value: float) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)

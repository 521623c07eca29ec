"""Unit tests for the statistics (EpisodeTracker, MetricsWriter) and the step schedules
(UpdateScheduler, LinearSchedule). All fast: no environment, no subprocess."""

from __future__ import annotations

import csv
import math
import pathlib

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.common.schedules import LinearSchedule
from gym_env import TimeStep
from main_loop import UpdateScheduler
from tracker import EpisodeTracker, MetricsWriter

# --------------------------------------------------------------------------------------
# EpisodeTracker
# --------------------------------------------------------------------------------------


def _timestep(
    raw_reward,
    *,
    first=None,
    last=None,
    life_loss=None,
    terminal_on_life_loss: bool = True,
) -> TimeStep:
    """A batched TimeStep as gym_env builds it: `reward` clipped, discount 0 on game over and,
    with terminal_on_life_loss, on a lost life (the game goes on)."""
    raw = np.asarray(raw_reward, np.float32)
    n = len(raw)
    first = np.zeros(n, bool) if first is None else np.asarray(first, bool)
    last = np.zeros(n, bool) if last is None else np.asarray(last, bool)
    life_loss = np.zeros(n, bool) if life_loss is None else np.asarray(life_loss, bool)
    discount = np.ones(n, np.float32)
    discount[last] = 0.0
    if terminal_on_life_loss:
        discount[life_loss] = 0.0
    return TimeStep(
        observation=np.zeros((n, 1), np.float32),
        reward=np.clip(raw, -1.0, 1.0),
        raw_reward=np.where(first, 0.0, raw).astype(np.float32),
        discount=discount,
        first=first,
        last=last,
        life_loss=life_loss,
    )


def _reset(num_envs: int) -> TimeStep:
    return _timestep(np.zeros(num_envs), first=np.ones(num_envs, bool))


def test_episode_tracker_counts_whole_games_across_life_losses():
    tracker = EpisodeTracker(1)
    tracker.step(_reset(1))
    # One game of 6 agent steps with two lives lost in the middle (discount 0 there) and
    # rewards beyond the clipping range: only the game over ends the episode.
    tracker.step(_timestep([3.0]))
    tracker.step(_timestep([0.0], life_loss=[True]))
    tracker.step(_timestep([7.0]))
    tracker.step(_timestep([-4.0], life_loss=[True]))
    tracker.step(_timestep([10.0]))
    tracker.step(_timestep([0.0], life_loss=[True], last=[True]))
    stats = tracker.take_statistics("train")
    assert tracker.num_steps == 6
    assert stats["train/num_episodes"] == 1
    # Raw rewards summed over the whole game: 3 + 7 - 4 + 10 (clipped would give 1 + 1 - 1 + 1).
    assert stats["train/episode_return"] == 16.0
    assert stats["train/episode_length"] == 6.0


def test_episode_tracker_game_spanning_two_take_statistics_is_counted_whole_in_the_second():
    tracker = EpisodeTracker(2)
    tracker.step(_reset(2))
    tracker.step(_timestep([2.0, 5.0]))
    tracker.step(_timestep([0.0, -3.0], life_loss=[False, True], last=[False, True]))
    first = tracker.take_statistics("train")
    # Env 1 finished a game (5 - 3 in 2 steps); env 0's game is still going.
    assert first["train/num_episodes"] == 1
    assert first["train/episode_return"] == 2.0
    assert first["train/episode_length"] == 2.0

    # Env 1 starts a new game (first: no reward, not an agent step of any game).
    tracker.step(_timestep([4.0, 0.0], first=[False, True], life_loss=[True, False]))
    tracker.step(_timestep([6.0, 1.0], last=[True, False]))
    second = tracker.take_statistics("eval")
    assert second["eval/num_episodes"] == 1
    assert second["eval/episode_return"] == 2.0 + 0.0 + 4.0 + 6.0  # The whole game of env 0.
    assert second["eval/episode_length"] == 4.0
    assert second["eval/episode_return_min"] == second["eval/episode_return_max"] == 12.0

    third = tracker.take_statistics("train")
    assert third["train/num_episodes"] == 0
    assert math.isnan(third["train/episode_return"])
    assert math.isnan(third["train/episode_length"])


def test_episode_tracker_returns_ignore_clipped_learning_reward():
    tracker = EpisodeTracker(1)
    tracker.step(_reset(1))
    step = _timestep([25.0], last=[True])
    step.reward[:] = -1.0  # Learning reward unrelated to the score.
    tracker.step(step)
    assert tracker.episode_returns == [25.0]
    assert tracker.episode_lengths == [1]


def test_episode_tracker_several_games_min_max_mean():
    tracker = EpisodeTracker(1)
    for returns in ([1.0, 2.0], [-5.0], [0.0, 0.0, 9.0]):
        tracker.step(_reset(1))
        for i, r in enumerate(returns):
            tracker.step(_timestep([r], last=[i == len(returns) - 1]))
    stats = tracker.statistics("eval")
    assert stats["eval/num_episodes"] == 3
    assert stats["eval/episode_return"] == pytest.approx((3.0 - 5.0 + 9.0) / 3)
    assert stats["eval/episode_return_min"] == -5.0
    assert stats["eval/episode_return_max"] == 9.0
    assert stats["eval/episode_length"] == pytest.approx(2.0)


# --------------------------------------------------------------------------------------
# MetricsWriter
# --------------------------------------------------------------------------------------


def _read_csv(path: pathlib.Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _scalars(directory: pathlib.Path, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    if tag not in accumulator.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def test_metrics_writer_csv_rows(tmp_path):
    path = tmp_path / "sub" / "results.csv"
    writer = MetricsWriter(path, None, frames_per_step=4)
    writer.write(1, 100, {"train/episode_return": 1.5, "train/num_episodes": 2})
    writer.write(2, 200, {"train/episode_return": math.nan, "learner/loss": 0.25})
    writer.close()
    fields, rows = _read_csv(path)
    assert fields == [
        "iteration",
        "step",
        "frames",
        "train/episode_return",
        "train/num_episodes",
        "learner/loss",
    ]
    assert rows == [
        {
            "iteration": "1",
            "step": "100",
            "frames": "400",
            "train/episode_return": "1.5",
            "train/num_episodes": "2",
            "learner/loss": "",
        },
        {
            "iteration": "2",
            "step": "200",
            "frames": "800",
            "train/episode_return": "nan",
            "train/num_episodes": "",
            "learner/loss": "0.25",
        },
    ]
    # The CSV is rewritten atomically: no temp file is left beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.csv"]


def _write_three_iterations(csv_path: pathlib.Path | None, tb_dir: pathlib.Path | None) -> None:
    """Three iterations of 100 steps, each writing x = its iteration, for a resume to rewrite."""
    writer = MetricsWriter(csv_path, tb_dir)
    for iteration in (1, 2, 3):
        writer.write(iteration, 100 * iteration, {"x": float(iteration)})
    writer.close()


def test_metrics_writer_resume_drops_rows_after_the_resumed_iteration(tmp_path):
    path = tmp_path / "results.csv"
    _write_three_iterations(path, None)

    resumed = MetricsWriter(path, None, resume_iteration=1, resume_step=100)
    resumed.write(2, 200, {"x": 20.0})
    resumed.write(3, 300, {"x": 30.0})
    resumed.close()
    _, rows = _read_csv(path)
    assert [(r["iteration"], r["step"], r["x"]) for r in rows] == [
        ("1", "100", "1"),
        ("2", "200", "20"),
        ("3", "300", "30"),
    ]


def test_metrics_writer_fresh_writer_does_not_keep_old_rows(tmp_path):
    path = tmp_path / "results.csv"
    old = MetricsWriter(path, None)
    old.write(1, 100, {"x": 1.0})
    old.close()
    fresh = MetricsWriter(path, None)  # resume_iteration=0: a new run.
    fresh.write(1, 50, {"x": 5.0})
    fresh.close()
    _, rows = _read_csv(path)
    assert [(r["iteration"], r["step"], r["x"]) for r in rows] == [("1", "50", "5")]


def test_metrics_writer_tensorboard_scalars(tmp_path):
    tb = tmp_path / "tb"
    writer = MetricsWriter(None, tb)
    writer.write(1, 100, {"loss": 0.5, "return": math.nan})
    writer.write(2, 200, {"loss": 0.25, "return": 3.0})
    writer.close()
    assert _scalars(tb, "loss") == [(100, 0.5), (200, 0.25)]
    assert _scalars(tb, "return") == [(200, 3.0)]  # NaN is not written.
    # Environment frames beside agent steps; one frame per step without an action repeat.
    assert _scalars(tb, "frames") == [(100, 100.0), (200, 200.0)]


def test_metrics_writer_tensorboard_resume_keeps_the_resumed_iteration(tmp_path):
    tb = tmp_path / "tb"
    _write_three_iterations(None, tb)
    # Killed after the checkpoint of iteration 1 (step 100): resume writes iterations 2, 3.
    resumed = MetricsWriter(None, tb, resume_iteration=1, resume_step=100)
    resumed.write(2, 200, {"x": 20.0})
    resumed.close()
    # Step 100 (kept: the run resumed after it) and the new step 200; the killed run's
    # steps 200 and 300 are purged.
    assert _scalars(tb, "x") == [(100, 1.0), (200, 20.0)]


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------


def test_update_scheduler_one_update_per_four_warm_steps():
    scheduler = UpdateScheduler(4)
    assert scheduler.updates_due(100, ready=False) == 0  # Steps before warm-up don't count.
    assert [scheduler.updates_due(1, ready=True) for _ in range(9)] == [0, 0, 0, 1, 0, 0, 0, 1, 0]
    assert scheduler.updates_due(10, ready=True) == 2  # 19 warm steps: 4 updates in all.
    assert scheduler.updates_due(1, ready=True) == 1  # 20 warm steps: 5 updates.
    assert scheduler.updates_done == 5


def test_update_scheduler_fractional_ratio():
    scheduler = UpdateScheduler(0.5)  # Two updates per agent step.
    assert scheduler.updates_due(1, ready=True) == 2
    assert scheduler.updates_due(3, ready=True) == 6
    scheduler = UpdateScheduler(2.5)
    assert [scheduler.updates_due(1, ready=True) for _ in range(5)] == [0, 0, 1, 0, 1]


def test_linear_schedule_values():
    schedule = LinearSchedule(start=1.0, end=0.1, duration=100, begin=10)
    assert schedule(0) == 1.0
    assert schedule(10) == 1.0
    assert schedule(60) == pytest.approx(0.55)
    assert schedule(35) == pytest.approx(0.775)
    assert schedule(110) == pytest.approx(0.1)
    assert schedule(10_000) == pytest.approx(0.1)
    rising = LinearSchedule(start=0.4, end=1.0, duration=4)
    assert [rising(s) for s in range(6)] == pytest.approx([0.4, 0.55, 0.7, 0.85, 1.0, 1.0])
    assert LinearSchedule(start=1.0, end=0.1, duration=0)(0) == 0.1

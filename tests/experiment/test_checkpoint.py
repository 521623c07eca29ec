"""Unit tests for the statistics (EpisodeTracker, MetricsWriter), the checkpoint files
(atomic save, safe load, metadata checks, latest-path ordering), RunCheckpointer, and the
step schedules (UpdateScheduler, LinearSchedule). All fast: no environment, no subprocess."""

from __future__ import annotations

import csv
import math
import os
import pathlib
import pickle
import warnings

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.common.schedules import LinearSchedule
from experiment import checkpoint
from experiment.checkpoint import CheckpointError, RunCheckpointer
from experiment.errors import UserError
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


def test_metrics_writer_resume_drops_rows_after_the_resumed_iteration(tmp_path):
    path = tmp_path / "results.csv"
    writer = MetricsWriter(path, None)
    for iteration in (1, 2, 3):
        writer.write(iteration, 100 * iteration, {"x": float(iteration)})
    writer.close()

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
    writer = MetricsWriter(None, tb)
    for iteration in (1, 2, 3):
        writer.write(iteration, 100 * iteration, {"x": float(iteration)})
    writer.close()
    # Killed after the checkpoint of iteration 1 (step 100): resume writes iterations 2, 3.
    resumed = MetricsWriter(None, tb, resume_iteration=1, resume_step=100)
    resumed.write(2, 200, {"x": 20.0})
    resumed.close()
    # Step 100 (kept: the run resumed after it) and the new step 200; the killed run's
    # steps 200 and 300 are purged.
    assert _scalars(tb, "x") == [(100, 1.0), (200, 20.0)]


# --------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------

METADATA = {"agent": "dqn", "environment_name": "Pong", "observation_shape": [4, 84, 84]}


def _state() -> dict:
    return {
        "iteration": 3,
        "total_steps": 1200,
        "weights": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.int64)},
        "rng": checkpoint.numpy_rng_state(np.random.default_rng(7)),
        "torch_rng": checkpoint.torch_rng_state(),
        "names": ["a", "b"],
        "config": {"dueling": True, "discount": 0.99},
    }


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "run" / "iteration_0003.ckpt"  # The directory is created.
    state = _state()
    checkpoint.save(path, state, METADATA)
    # A tuple in the expected metadata matches the list that was saved.
    loaded = checkpoint.load(path, {**METADATA, "observation_shape": (4, 84, 84)})
    assert loaded.keys() == state.keys()
    assert loaded["iteration"] == 3 and loaded["total_steps"] == 1200
    assert torch.equal(loaded["weights"]["w"], state["weights"]["w"])
    assert loaded["weights"]["b"].dtype == torch.int64
    assert loaded["names"] == ["a", "b"] and loaded["config"] == state["config"]
    assert torch.equal(loaded["torch_rng"]["cpu"], state["torch_rng"]["cpu"])
    # The numpy Generator continues exactly where the saved one was.
    rng = np.random.default_rng(0)
    checkpoint.restore_numpy_rng(rng, loaded["rng"])
    np.testing.assert_array_equal(rng.random(5), np.random.default_rng(7).random(5))
    # The file itself loads with plain torch.load(weights_only=True).
    payload = torch.load(path, weights_only=True)
    assert payload["metadata"]["agent"] == "dqn"
    assert payload["metadata"]["format_version"] == checkpoint.FORMAT_VERSION
    assert sorted(p.name for p in path.parent.iterdir()) == ["iteration_0003.ckpt"]


def test_torch_rng_round_trip():
    saved = checkpoint.torch_rng_state()
    expected = torch.rand(4)
    torch.rand(10)
    checkpoint.restore_torch_rng(saved)
    assert torch.equal(torch.rand(4), expected)


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "iteration_0001.ckpt"
    checkpoint.save(path, {"value": torch.ones(3)}, METADATA)
    before = path.read_bytes()

    real_write = pathlib.Path.write_bytes

    def failing_write(self, data):
        real_write(self, b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(pathlib.Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"value": torch.zeros(3)}, METADATA)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iteration_0001.ckpt"]
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path, METADATA)["value"], torch.ones(3))


def _assert_one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message and "\r" not in message
    return message


@pytest.mark.parametrize(
    ("key", "value"),
    [("agent", "r2d2"), ("environment_name", "Breakout"), ("observation_shape", [4, 42, 42])],
)
def test_checkpoint_metadata_mismatch_raises_one_line(tmp_path, key, value):
    path = tmp_path / "iteration_0001.ckpt"
    checkpoint.save(path, {"x": 1}, METADATA)
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(path, {**METADATA, key: value})
    message = _assert_one_line(error)
    assert key in message and str(path) in message
    assert isinstance(error.value, UserError)


def test_checkpoint_other_format_version_is_refused(tmp_path):
    path = tmp_path / "old.ckpt"
    torch.save({"metadata": {**METADATA, "format_version": 0}, "state": {}}, path)
    with pytest.raises(CheckpointError, match="format version") as error:
        checkpoint.load(path, METADATA)
    _assert_one_line(error)


def test_checkpoint_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as error:
        checkpoint.load(tmp_path / "missing.ckpt", METADATA)
    _assert_one_line(error)

    good = tmp_path / "good.ckpt"
    checkpoint.save(good, _state(), METADATA)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    plain_tensor = tmp_path / "tensor.pt"
    torch.save(torch.ones(2), plain_tensor)  # Loadable, but not a checkpoint.
    for path in (truncated, garbage, plain_tensor):
        with pytest.raises(CheckpointError) as error:
            checkpoint.load(path, METADATA)
        assert str(path) in _assert_one_line(error)


class _Exploit:
    """Unpickling this runs os.mkdir(marker): what weights_only loading must refuse."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_checkpoint_with_pickled_object_is_refused(tmp_path, writer):
    marker = tmp_path / "code_ran"
    path = tmp_path / "iteration_0001.ckpt"
    if writer == "pickle":
        with open(path, "wb") as f:
            pickle.dump(_Exploit(marker), f)
    else:
        torch.save({"metadata": METADATA, "state": {"x": _Exploit(marker)}}, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as error:
            checkpoint.load(path, METADATA)
    # A CLI prints this one line: torch's warnings must not add more.
    assert [str(w.message) for w in caught] == []
    message = _assert_one_line(error)
    assert str(path) in message
    # The error names the problem instead of passing on torch's advice to load unsafely.
    assert "weights_only` set to `False`" not in message
    assert not marker.exists()


def test_latest_path_orders_partial_checkpoints(tmp_path):
    assert checkpoint.latest_path(tmp_path / "missing") is None
    assert checkpoint.latest_path(tmp_path) is None
    for name in ("iteration_0002.ckpt", "iteration_0003.ckpt", "notes.txt", "replay.npz"):
        (tmp_path / name).write_bytes(b"")
    assert checkpoint.latest_path(tmp_path).name == "iteration_0003.ckpt"
    (tmp_path / "iteration_0004.partial.ckpt").write_bytes(b"")
    assert checkpoint.latest_path(tmp_path).name == "iteration_0004.partial.ckpt"
    (tmp_path / "iteration_0004.ckpt").write_bytes(b"")
    assert checkpoint.latest_path(tmp_path).name == "iteration_0004.ckpt"
    # Numeric, not lexicographic: 10000 > 9999 when the padding runs out.
    (tmp_path / "iteration_9999.ckpt").write_bytes(b"")
    assert checkpoint.latest_path(tmp_path).name == "iteration_9999.ckpt"
    (tmp_path / "iteration_10000.ckpt").write_bytes(b"")
    assert checkpoint.latest_path(tmp_path).name == "iteration_10000.ckpt"
    assert checkpoint.iteration_path(tmp_path, 4, partial=True).name == (
        "iteration_0004.partial.ckpt"
    )


def test_load_module_state_mismatch_is_one_line_checkpoint_error():
    network = torch.nn.Linear(3, 2)
    other = torch.nn.Linear(3, 4)
    with pytest.raises(CheckpointError, match="does not fit") as error:
        checkpoint.load_module_state(network, other.state_dict(), "network")
    assert "size mismatch" in _assert_one_line(error)
    with pytest.raises(CheckpointError, match="does not fit") as error:
        checkpoint.load_module_state(network, {"weight": torch.zeros(2, 3)}, "network")
    _assert_one_line(error)
    source = torch.nn.Linear(3, 2)
    checkpoint.load_module_state(network, source.state_dict(), "network")
    assert torch.equal(network.weight, source.weight)


# --------------------------------------------------------------------------------------
# RunCheckpointer
# --------------------------------------------------------------------------------------


def test_run_checkpointer_refuses_fresh_run_over_checkpoints_and_resumes_latest(tmp_path):
    run_dir = tmp_path / "dqn" / "Pong"
    first = RunCheckpointer(run_dir, METADATA, resume=False)
    assert first.load_latest() is None
    first.save(1, {"iteration": 1})
    partial = first.save(1, {"iteration": 1}, steps_into_next=50)
    assert partial.name == "iteration_0002.partial.ckpt"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}

    with pytest.raises(UserError, match="--resume") as error:
        RunCheckpointer(run_dir, METADATA, resume=False)
    _assert_one_line(error)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before

    resumed = RunCheckpointer(run_dir, METADATA, resume=True)
    assert resumed.load_latest()["steps_into_iteration"] == 50
    # Finishing iteration 2 supersedes its partial checkpoint.
    resumed.save(2, {"iteration": 2})
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "iteration_0001.ckpt",
        "iteration_0002.ckpt",
    ]
    other_game = RunCheckpointer(run_dir, {**METADATA, "environment_name": "Breakout"}, True)
    with pytest.raises(CheckpointError, match="environment_name"):
        other_game.load_latest()


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

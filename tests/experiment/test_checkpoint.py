"""Unit tests for the checkpoint files (atomic save, safe load, metadata checks, latest-path
ordering) and RunCheckpointer. All fast: no environment, no subprocess."""

from __future__ import annotations

import os
import pathlib
import pickle
import warnings

import numpy as np
import pytest
import torch

from experiment import checkpoint
from experiment.checkpoint import CheckpointError, RunCheckpointer
from experiment.errors import UserError

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


def test_a_run_label_names_its_own_directory_beside_the_unlabelled_run(tmp_path):
    plain = checkpoint.run_directory(tmp_path, "ngu", "Pong", 3)
    labelled = checkpoint.run_directory(tmp_path, "ngu", "Pong", 3, "nstep3")
    assert plain == tmp_path / "ngu" / "Pong" / "seed_3"
    assert labelled == tmp_path / "ngu-nstep3" / "Pong" / "seed_3"


@pytest.mark.parametrize("label", ["a/b", "../up", "..", ".hidden", "a b", "x" * 65])
def test_a_run_label_that_is_not_a_plain_name_is_a_one_line_error(label):
    with pytest.raises(checkpoint.CheckpointError, match="--run_label") as error:
        checkpoint.run_directory(pathlib.Path("runs"), "ngu", "Pong", 3, label)
    assert "\n" not in str(error.value)


def test_eval_agent_reads_the_config_of_a_checkpoint_that_predates_added_settings():
    import dataclasses

    from agents.agent57.agent import Agent57Config
    from agents.dqn.agent import DqnConfig
    from agents.ngu.agent import NguConfig
    from agents.r2d2.agent import R2d2Config
    from experiment.evaluate_checkpoint import config_from_checkpoint

    for config_cls in (DqnConfig, R2d2Config, NguConfig, Agent57Config):
        saved = dataclasses.asdict(config_cls())
        for added in ("torso", "lstm_size", "separate_value_networks"):
            saved.pop(added, None)  # As written before those settings existed.
        # Each agent's own value: NGU was trained with one value network, Agent57 with two.
        assert config_from_checkpoint(config_cls, {"config": saved}) == config_cls()


@pytest.mark.parametrize("averaged", [False, True], ids=["online weights", "averaged weights"])
def test_eval_agent_plays_the_weights_the_run_evaluated(averaged):
    import dataclasses
    from types import SimpleNamespace

    from agents.dqn.agent import DqnConfig, Learner, build_network
    from experiment.evaluate_checkpoint import network_from_checkpoint

    config = DqnConfig(evaluation_average_decay=0.5 if averaged else 0.0)
    env = SimpleNamespace(observation_shape=(4,), num_actions=2)
    network = build_network(config, env.observation_shape, env.num_actions)
    learner = Learner(network, None, config, torch.device("cpu"), total_updates=1)
    learner.apply_gradients(network(torch.ones(3, 4)).square().mean())
    state = {"config": dataclasses.asdict(config), "learner": learner.state_dict()}
    _, loaded, _ = network_from_checkpoint(state, DqnConfig, build_network, env)
    played = learner.evaluation_network if averaged else learner.network
    for p, q in zip(loaded.state_dict().values(), played.state_dict().values(), strict=True):
        torch.testing.assert_close(p.cpu(), q, rtol=0, atol=0)
    pairs = zip(loaded.state_dict().values(), network.state_dict().values(), strict=True)
    differs = [not torch.equal(p.cpu(), q) for p, q in pairs]
    assert any(differs) == averaged  # the average lags the online weights after one update

"""Command-line tests of a run that fails early and loses nothing: a bad output path stops a
run within seconds, before training; --resume refuses changed hyperparameters unless they are
named in --allow_config_change; a checkpoint write that fails (a file size limit standing in
for a full disk) stops with one line and keeps the previous checkpoint; R2D2's --save_replay
gives a resumed run the same replay, priorities included."""

from __future__ import annotations

import pathlib
import resource
import shutil
import subprocess
import time

import cli_support
import numpy as np
import pytest
import torch
from cli_support import (
    REPO,
    check_ok,
    digests,
    final_error_line,
    load_checkpoint,
    output_flags,
    read_csv,
    subprocess_env,
    tiny_flags,
)

from experiment import checkpoint
from experiment.checkpoint import RunCheckpointer

DQN_FLAGS = [*tiny_flags("dqn"), "--num_train_steps=300", "--num_eval_steps=50"]
R2D2_FLAGS = [*tiny_flags("r2d2"), "--num_eval_steps=50"]


# --------------------------------------------------------------------------------------
# Fail fast
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "module", "bad", "expected"),
    [
        ("dqn", "run_atari", "checkpoint_dir_is_a_file", "--checkpoint_dir: "),
        ("dqn", "run_atari", "csv_path_is_a_directory", "--results_csv_path: "),
        ("dqn", "run_atari", "tensorboard_under_a_file", "--tensorboard_dir: "),
        ("r2d2", "run_atari", "checkpoint_dir_is_a_file", "--checkpoint_dir: "),
        ("dqn", "eval_agent", "recording_dir_is_a_file", "--recording_dir: "),
    ],
)
def test_bad_output_path_fails_within_seconds_before_training(
    tmp_path, agent, module, bad, expected
):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    args = {
        "checkpoint_dir_is_a_file": [f"--checkpoint_dir={blocker}"],
        "csv_path_is_a_directory": [f"--results_csv_path={tmp_path}"],
        "tensorboard_under_a_file": [f"--tensorboard_dir={blocker / 'tb'}"],
        "recording_dir_is_a_file": [f"--recording_dir={blocker}"],
    }[bad]
    if module == "run_atari":
        # A long first iteration: a check at its end would run past the timeout.
        args += ["--num_train_steps=10000000", "--device=cpu"]
        if "--checkpoint_dir" not in args[0]:
            args.append(f"--checkpoint_dir={tmp_path / 'checkpoints'}")
        if "--tensorboard_dir" not in args[0]:
            args.append(f"--tensorboard_dir={tmp_path / 'tb'}")
    else:
        args.append(f"--checkpoint_dir={tmp_path / 'checkpoints'}")
    started = time.monotonic()
    result = cli_support.run_module(agent, module, args, timeout=120)
    seconds = time.monotonic() - started
    line = final_error_line(result)
    assert line.startswith(f"error: {expected}"), line
    assert seconds < 60, seconds  # Imports only; no environment step was taken.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # Nothing created.


# --------------------------------------------------------------------------------------
# Changed hyperparameters on resume, and a failed checkpoint write
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory) -> pathlib.Path:
    """One finished iteration of a tiny DQN run, copied by the tests that resume it."""
    root = tmp_path_factory.mktemp("dqn_run")
    check_ok(
        cli_support.run_module(
            "dqn", "run_atari", [*DQN_FLAGS, "--num_iterations=1", *output_flags(root)]
        )
    )
    return root


def _copy_run(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target


@pytest.mark.slow
def test_resume_refuses_changed_hyperparameters_and_accepts_named_ones(dqn_run, tmp_path):
    root = _copy_run(dqn_run, tmp_path / "run")
    before = digests(root)
    resume = [*DQN_FLAGS, "--num_iterations=2", *output_flags(root), "--resume"]
    changed = ["--learning_rate=0.001", "--n_step=3"]

    refused = cli_support.run_module("dqn", "run_atari", [*resume, *changed], timeout=120)
    line = final_error_line(refused)
    assert "learning_rate 0.0001 -> 0.001" in line and "n_step 1 -> 3" in line, line
    assert line.endswith("pass --allow_config_change=learning_rate,n_step to accept them")
    assert digests(root) == before  # Nothing written.

    partly = cli_support.run_module(
        "dqn", "run_atari", [*resume, *changed, "--allow_config_change=learning_rate"]
    )
    line = final_error_line(partly)
    assert "n_step 1 -> 3" in line and "learning_rate" not in line.split(":", 2)[2].split(";")[0]

    accepted = cli_support.run_module(
        "dqn", "run_atari", [*resume, *changed, "--allow_config_change=learning_rate,n_step"]
    )
    check_ok(accepted)
    state = load_checkpoint(root / "checkpoints/dqn/Pong/seed_3/iteration_0002.ckpt")["state"]
    assert state["hyperparameters"]["learning_rate"] == 0.001
    assert state["hyperparameters"]["n_step"] == 3
    assert {g["lr"] for g in state["learner"]["optimizer"]["param_groups"]} == {0.001}


def _limit_file_size() -> None:
    # A stand-in for a full disk: writes past 2 MB fail with EFBIG (Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 2**20, 2 * 2**20))


@pytest.mark.slow
def test_failed_checkpoint_write_is_one_line_and_keeps_the_previous_checkpoint(dqn_run, tmp_path):
    root = _copy_run(dqn_run, tmp_path / "run")
    run_dir = root / "checkpoints/dqn/Pong/seed_3"
    first = run_dir / "iteration_0001.ckpt"
    first_bytes = first.read_bytes()
    assert len(first_bytes) > 2 * 2**20  # The limit stops the next checkpoint's write.
    result = subprocess.run(
        cli_support.command(
            "dqn", "run_atari", [*DQN_FLAGS, "--num_iterations=2", *output_flags(root), "--resume"]
        ),
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=cli_support.TIMEOUT_S,
        preexec_fn=_limit_file_size,
    )
    line = final_error_line(result)
    assert "cannot write" in line and "iteration_0002.ckpt" in line, line
    assert "File too large" in line and "iteration_0001.ckpt is intact" in line, line
    assert [p.name for p in run_dir.glob("*.ckpt")] == ["iteration_0001.ckpt"]
    assert not list(run_dir.glob(".*.tmp"))  # No torn temp file left.
    assert first.read_bytes() == first_bytes
    state = checkpoint.load(first, {"agent": "dqn", "environment_name": "Pong"})
    assert state["iteration"] == 1

    # And the run resumes from it once the disk has room again.
    resumed = cli_support.run_module(
        "dqn", "run_atari", [*DQN_FLAGS, "--num_iterations=2", *output_flags(root), "--resume"]
    )
    check_ok(resumed)
    assert [r["iteration"] for r in read_csv(run_dir / "results.csv")] == ["1", "2"]


# --------------------------------------------------------------------------------------
# R2D2 replay kept across a resume
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_r2d2_save_replay_gives_the_resumed_run_the_same_replay(tmp_path):
    args = [*R2D2_FLAGS, "--num_train_steps=400", "--num_iterations=1", "--save_replay"]
    check_ok(cli_support.run_module("r2d2", "run_atari", [*args, *output_flags(tmp_path)]))
    run_dir = tmp_path / "checkpoints/r2d2/Pong/seed_5"
    with np.load(run_dir / "replay.npz", allow_pickle=False) as data:  # Plain arrays only.
        saved = {k: data[k] for k in data.files}
    size = len(saved["slots"])
    row = read_csv(run_dir / "results.csv")[0]
    assert size == int(float(row["replay/size"])) > 0

    # The resumed run restores it (nothing left to train: it only loads).
    resumed = cli_support.run_module(
        "r2d2", "run_atari", [*args, *output_flags(tmp_path), "--resume"]
    )
    check_ok(resumed)
    assert f"Restored replay with {size} sequences" in resumed.stderr

    # What it restores: the same items and the same priorities, learned ones included.
    from agents.r2d2.agent import R2d2Config, build_learner
    from experiment.runner import restore_replay

    config = R2d2Config(
        batch_size=4, min_replay_size=8, replay_capacity=100, burn_in=8, sequence_length=16,
        replay_period=8,
    )  # fmt: skip
    learner = build_learner(config, (4, 84, 84), np.uint8, 18, 0, torch.device("cpu"))
    metadata = {"agent": "r2d2", "environment_name": "Pong"}
    restore_replay(learner, RunCheckpointer(run_dir, metadata, resume=True), iteration=1)
    assert learner.replay.size == size
    restored = learner.replay.state_dict()
    np.testing.assert_array_equal(restored["sampler.tree_nodes"], saved["sampler.tree_nodes"])
    sampler = learner.replay.sampler
    probabilities = sampler.probabilities(sampler.valid_slots())
    assert len(np.unique(probabilities)) > 1  # Learned priorities, not all the maximum.
    for key in ("slots", "frame_buffer", "steps.reward", "start_states"):
        np.testing.assert_array_equal(restored[key], saved[key])

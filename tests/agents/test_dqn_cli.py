"""End-to-end tests of the DQN command lines: `python -m agents.dqn.run_atari` and
`python -m agents.dqn.eval_agent`, run as subprocesses from the repository root with tiny
step counts. They check the files a run leaves (checkpoints, CSV, TensorBoard, mp4), resuming
after a SIGKILL, and that bad input gives one `error:` line, exit code 2 and loses nothing."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import re
import shutil
import signal
import subprocess
import time

import cli_support
import cv2
import numpy as np
import pytest
import torch
from cli_support import (
    REPO,
    TIMEOUT_S,
    as_flags,
    check_ok,
    digests,
    final_error_line,
    load_checkpoint,
    one_error_line,
    output_dirs,
    read_csv,
    subprocess_env,
    tiny_flags,
    video_frames,
)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiment import checkpoint
from networks.value import q_network_for

PONG_FLAGS = [
    "--num_iterations=2",
    "--num_train_steps=300",
    "--num_eval_steps=200",
    *tiny_flags("dqn"),
]


def run_module(module: str, args: list[str], timeout: float = TIMEOUT_S):
    return cli_support.run_module("dqn", module, args, timeout)


def _run_dirs(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Where a run under root writes, by flag name: output_dirs and the results CSV."""
    return {**output_dirs(root), "results_csv_path": root / "results.csv"}


def _scalar_steps(directory: pathlib.Path, tag: str) -> list[int]:
    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def _scalar_values(directory: pathlib.Path, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


@pytest.fixture(scope="module")
def pong_run(tmp_path_factory) -> dict[str, pathlib.Path]:
    """One tiny DQN run on Pong (2 iterations of 300 steps), shared read-only by the tests."""
    dirs = _run_dirs(tmp_path_factory.mktemp("pong_run"))
    result = run_module("run_atari", [*PONG_FLAGS, *as_flags(dirs)])
    check_ok(result)
    return {**dirs, "run_dir": dirs["checkpoint_dir"] / "dqn" / "Pong" / "seed_3"}


# --------------------------------------------------------------------------------------
# A run end to end
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_atari_writes_checkpoints_csv_and_tensorboard(pong_run):
    run_dir = pong_run["run_dir"]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "iteration_0001.ckpt",
        "iteration_0002.ckpt",
    ]
    rows = read_csv(pong_run["results_csv_path"])
    assert [(r["iteration"], r["step"]) for r in rows] == [("1", "300"), ("2", "600")]
    # Atari repeats each action for 4 frames: papers plot against these frames.
    assert [r["frames"] for r in rows] == ["1200", "2400"]
    # The run record beside the CSV says what the run is, for the report.
    record = json.loads(pong_run["results_csv_path"].with_suffix(".run.json").read_text())
    assert record == {
        "agent": "dqn",
        "environment_name": "Pong",
        "seed": 3,
        "frames_per_step": 4,
        "num_iterations": 2,
        "label": "",  # No --run_label.
        "format_version": 1,
    }
    for column in (
        "train/episode_return",
        "eval/episode_return",
        "learner/loss",
        "learner/num_updates",
    ):
        assert column in rows[0], column
    # 200 warm steps of 300 in iteration 1: one update per 4 steps, with a finite loss.
    assert [float(r["learner/num_updates"]) for r in rows] == [50.0, 125.0]
    assert all(np.isfinite(float(r["learner/loss"])) for r in rows)

    tb_dir = pong_run["tensorboard_dir"] / "dqn" / "Pong" / "seed_3"
    assert list(tb_dir.glob("events.out.tfevents.*"))
    assert _scalar_steps(tb_dir, "learner/loss") == [300, 600]
    assert _scalar_steps(tb_dir, "learner/num_updates") == [300, 600]
    assert _scalar_values(tb_dir, "frames") == [(300, 1200.0), (600, 2400.0)]


@pytest.mark.slow
def test_checkpoint_holds_everything_needed_to_resume(pong_run):
    payload = load_checkpoint(pong_run["run_dir"] / "iteration_0002.ckpt")
    metadata = payload["metadata"]
    assert metadata["agent"] == "dqn" and metadata["environment_name"] == "Pong"
    assert metadata["num_actions"] == 6 and list(metadata["observation_shape"]) == [4, 84, 84]
    state = payload["state"]
    assert state["iteration"] == 2 and state["total_steps"] == 600
    assert state["actor"]["agent_steps"] == 600
    assert "state" in state["actor"]["rng"]  # The exploration generator's state.
    assert isinstance(state["torch_rng"]["cpu"], torch.Tensor)
    learner = state["learner"]
    assert learner["num_updates"] == 125
    network = q_network_for((4, 84, 84), 6, bool(state["config"]["dueling"]))
    network.load_state_dict(learner["network"])  # Loads strictly: every key, every shape.
    network.load_state_dict(learner["target_network"])
    optimizer = torch.optim.Adam(network.parameters())
    optimizer.load_state_dict(learner["optimizer"])
    adam_steps = {int(s["step"]) for s in learner["optimizer"]["state"].values()}
    assert adam_steps == {125}
    assert state["config"]["batch_size"] == 8 and state["atari"]["game"] == "Pong"
    # The first checkpoint is a different point of the same run.
    first = load_checkpoint(pong_run["run_dir"] / "iteration_0001.ckpt")["state"]
    assert first["iteration"] == 1 and first["total_steps"] == 300
    assert first["actor"]["agent_steps"] == 300


@pytest.mark.slow
def test_eval_agent_records_one_episode_to_mp4(pong_run, tmp_path):
    before = digests(pong_run["checkpoint_dir"])
    recording_dir = tmp_path / "recordings"
    result = run_module(
        "eval_agent",
        [
            f"--checkpoint_dir={pong_run['checkpoint_dir']}",
            f"--recording_dir={recording_dir}",
            "--num_eval_steps=150",
            "--seed=3",
        ],
    )
    check_ok(result)
    videos = list(recording_dir.glob("*.mp4"))
    assert len(videos) == 1
    assert result.stdout.strip().splitlines()[-1] == str(videos[0])
    assert "iteration_0002.ckpt" in result.stderr  # The latest checkpoint was evaluated.
    frames = [frame.shape for frame in video_frames(videos[0])]
    # An untrained agent does not finish a game of Pong in 150 steps: the reset frame plus
    # one frame per step, full-resolution RGB.
    assert len(frames) == 151
    assert set(frames) == {(210, 160, 3)}
    assert digests(pong_run["checkpoint_dir"]) == before


@pytest.mark.slow
def test_eval_agent_plays_num_episodes_whole_games_and_records_the_first(pong_run, tmp_path):
    recording_dir = tmp_path / "recordings"
    result = run_module(
        "eval_agent",
        [
            f"--checkpoint_dir={pong_run['checkpoint_dir']}",
            f"--recording_dir={recording_dir}",
            "--seed=3",
            "--num_episodes=3",
            "--max_episode_frames=400",  # Games of at most 100 agent steps.
            "--num_eval_steps=1000",
        ],
    )
    check_ok(result)
    played = re.search(r": (\d+) games, scores \[(.*)\] in \[(.*)\] agent steps", result.stderr)
    assert played, result.stderr
    scores = [float(s) for s in played.group(2).split(",")]
    lengths = [int(n) for n in played.group(3).split(",")]
    assert played.group(1) == "3" and len(scores) == len(lengths) == 3
    # Each game ended by itself (at the 400-frame cap), none was cut at --num_eval_steps.
    assert all(0 < n <= 100 for n in lengths), lengths

    # Mean ± std over the 3 games and the human-normalised score (Pong: random -20.7,
    # human 14.6) on stdout, then the video of the first game only.
    mean, std = np.mean(scores), np.std(scores, ddof=1)
    summary, video_line = result.stdout.strip().splitlines()[-2:]
    assert summary == (
        f"Pong: 3 games, score {mean:.1f} ± {std:.1f}, "
        f"human-normalised {(mean + 20.7) / 35.3:.3f} ± {std / 35.3:.3f}"
    )
    (video,) = recording_dir.glob("*.mp4")
    assert video_line == str(video)
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == lengths[0] + 1
    capture.release()


@pytest.mark.slow
def test_eval_agent_finds_the_run_of_its_seed(pong_run, tmp_path):
    # pong_run trained with --seed=3; seed 1 (the default) has no run.
    result = run_module(
        "eval_agent",
        [f"--checkpoint_dir={pong_run['checkpoint_dir']}", f"--recording_dir={tmp_path}"],
        timeout=60,
    )
    line = one_error_line(result)
    assert "seed 1" in line and "seed_1" in line and "runs exist for --seed=3" in line
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------
# Resume and refusing to overwrite
# --------------------------------------------------------------------------------------

RESUME_FLAGS = [
    "--num_iterations=3",
    "--num_train_steps=400",
    "--num_eval_steps=100",
    *tiny_flags("dqn"),
]


def _final_state(dirs: dict[str, pathlib.Path]) -> dict:
    return load_checkpoint(
        dirs["checkpoint_dir"] / "dqn" / "Pong" / "seed_3" / "iteration_0003.ckpt"
    )["state"]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    full = _run_dirs(tmp_path / "full")
    check_ok(run_module("run_atari", [*RESUME_FLAGS, *as_flags(full)]))

    dirs = _run_dirs(tmp_path / "killed")
    run_dir = dirs["checkpoint_dir"] / "dqn" / "Pong" / "seed_3"
    first_checkpoint = run_dir / "iteration_0001.ckpt"
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            cli_support.command("dqn", "run_atari", [*RESUME_FLAGS, *as_flags(dirs)]),
            cwd=REPO,
            env=subprocess_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while not first_checkpoint.exists() and process.poll() is None:
                assert time.monotonic() < deadline, "no first checkpoint in time"
                time.sleep(0.05)
            time.sleep(0.5)  # Into iteration 2, which takes seconds.
            assert process.poll() is None, log.read_text()[-3000:]
            os.kill(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert sorted(p.name for p in run_dir.iterdir()) == ["iteration_0001.ckpt"]
    first_bytes = first_checkpoint.read_bytes()

    resumed = run_module("run_atari", [*RESUME_FLAGS, *as_flags(dirs), "--resume"])
    check_ok(resumed)
    assert "Resuming from" in resumed.stderr and "iteration_0001.ckpt" in resumed.stderr
    assert first_checkpoint.read_bytes() == first_bytes  # Resuming rewrites no checkpoint.

    expected, state = _final_state(full), _final_state(dirs)
    for key in ("iteration", "total_steps"):
        assert state[key] == expected[key]
    assert (state["iteration"], state["total_steps"]) == (3, 1200)
    # The actor's step count (and so its ε) was restored, not restarted.
    assert state["actor"]["agent_steps"] == expected["actor"]["agent_steps"] == 1200

    columns = [
        [(r["iteration"], r["step"]) for r in read_csv(d["results_csv_path"])] for d in (full, dirs)
    ]
    assert columns[1] == columns[0] == [("1", "400"), ("2", "800"), ("3", "1200")]
    for d in (full, dirs):
        tb_dir = d["tensorboard_dir"] / "dqn" / "Pong" / "seed_3"
        assert _scalar_steps(tb_dir, "learner/num_updates") == [400, 800, 1200]


@pytest.mark.slow
def test_fresh_run_over_existing_checkpoints_fails_and_keeps_them(pong_run, tmp_path):
    dirs = _run_dirs(tmp_path)
    shutil.copytree(pong_run["checkpoint_dir"], dirs["checkpoint_dir"])
    shutil.copytree(pong_run["tensorboard_dir"], dirs["tensorboard_dir"])
    shutil.copy(pong_run["results_csv_path"], dirs["results_csv_path"])
    before = digests(tmp_path)

    result = run_module("run_atari", [*PONG_FLAGS, *as_flags(dirs)])
    line = one_error_line(result)
    assert "--resume" in line and "iteration_0002.ckpt" in line
    assert digests(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flag", "expected"),
    # A changed hyperparameter is named by the resume check; a changed action set by the
    # checkpoint's metadata (its network would not fit).
    [("--dueling", "dueling False -> True"), ("--full_action_space", "num_actions")],
)
def test_resume_with_incompatible_flags_fails_and_keeps_files(pong_run, tmp_path, flag, expected):
    dirs = _run_dirs(tmp_path)
    shutil.copytree(pong_run["checkpoint_dir"], dirs["checkpoint_dir"])
    shutil.copy(pong_run["results_csv_path"], dirs["results_csv_path"])
    before = digests(tmp_path)
    result = run_module(
        "run_atari", [*PONG_FLAGS, "--num_iterations=3", *as_flags(dirs), "--resume", flag]
    )
    # The log says which checkpoint was being resumed; then one error line ends the run.
    assert expected in final_error_line(result)
    assert "iteration_0002.ckpt" in result.stderr
    assert digests(tmp_path) == before
    assert not dirs["tensorboard_dir"].exists()


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--environment_name=Pongg"], ["Pongg", "--list"]),
        (["--num_iterations=0"], ["--num_iterations"]),
        (["--num_train_steps=abc"], ["--num_train_steps", "abc"]),
        (["--discount=2.0"], ["discount", "2.0"]),
        (["--min_replay_size=10", "--batch_size=32"], ["min_replay_size", "batch_size"]),
        (["--device=tpu"], ["--device", "tpu"]),
        (["--no_such_flag=1"], ["no_such_flag"]),
        (["--run_label=../a"], ["--run_label", "../a"]),
        (["--learning_rate=-0.001"], ["learning_rate", "-0.001"]),
    ],
    ids=[
        "unknown_game",
        "zero_iterations",
        "not_a_number",
        "discount",
        "replay",
        "device",
        "flag",
        "label_with_a_path",
        "negative_learning_rate",
    ],
)
def test_run_atari_bad_input_is_one_line_error(tmp_path, args, expected):
    dirs = _run_dirs(tmp_path)
    result = run_module("run_atari", [*PONG_FLAGS, *as_flags(dirs), *args], timeout=60)
    line = one_error_line(result)
    for text in expected:
        assert text in line
    assert not any(tmp_path.iterdir())  # Nothing was created.


def test_eval_agent_without_checkpoint_is_one_line_error(tmp_path):
    result = run_module(
        "eval_agent",
        [f"--checkpoint_dir={tmp_path / 'none'}", f"--recording_dir={tmp_path / 'rec'}"],
        timeout=60,
    )
    line = one_error_line(result)
    assert "no checkpoint" in line and "agents.dqn.run_atari" in line
    assert not any(tmp_path.iterdir())


class _Exploit:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _bad_checkpoint(case: str, source: pathlib.Path, directory: pathlib.Path) -> pathlib.Path:
    """Writes the bad checkpoint of `case` (from the real checkpoint `source`) in directory."""
    path = directory / f"{case}.ckpt"
    if case == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(100_000))
    elif case == "truncated":
        data = source.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif case == "pickled_object":
        with open(path, "wb") as f:
            pickle.dump(_Exploit(directory / "code_ran"), f)
    elif case == "other_game":
        shutil.copy(source, path)
    elif case in ("other_agent", "network_shape"):
        payload = load_checkpoint(source)
        metadata = {k: v for k, v in payload["metadata"].items() if k != "format_version"}
        state = payload["state"]
        if case == "other_agent":
            metadata["agent"] = "r2d2"
        else:
            # Right agent and game, but a network for 18 actions instead of Pong's 6.
            network = q_network_for((4, 84, 84), 18, False)
            state["learner"]["network"] = network.state_dict()
        checkpoint.save(path, state, metadata)
    else:
        raise AssertionError(case)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "extra", "expected"),
    [
        ("missing", [], ["not found"]),
        ("random_bytes", [], ["corrupt"]),
        ("truncated", [], ["corrupt"]),
        ("pickled_object", [], ["corrupt", "safe loading"]),
        ("other_game", ["--environment_name=Breakout"], ["environment_name", "Pong", "Breakout"]),
        ("other_agent", [], ["agent", "r2d2", "dqn"]),
        ("network_shape", [], ["does not fit"]),
    ],
)
def test_eval_agent_bad_checkpoint_is_one_line_error(pong_run, tmp_path, case, extra, expected):
    source = pong_run["run_dir"] / "iteration_0002.ckpt"
    if case == "missing":
        path = tmp_path / "missing.ckpt"
    else:
        path = _bad_checkpoint(case, source, tmp_path)
    saved = digests(pong_run["checkpoint_dir"])
    given = digests(tmp_path)
    recording_dir = tmp_path / "recordings"

    result = run_module(
        "eval_agent",
        [
            f"--checkpoint_path={path}",
            f"--checkpoint_dir={pong_run['checkpoint_dir']}",
            f"--recording_dir={recording_dir}",
            "--num_eval_steps=20",
            *extra,
        ],
        timeout=60,
    )
    line = one_error_line(result)
    assert str(path) in line
    for text in expected:
        assert text in line
    # Nothing saved was changed, no half video was left, no pickled code ran.
    assert digests(pong_run["checkpoint_dir"]) == saved
    assert digests(tmp_path) == given
    assert not recording_dir.exists() or not any(recording_dir.iterdir())

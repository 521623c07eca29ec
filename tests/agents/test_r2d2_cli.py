"""End-to-end tests of the R2D2 command lines with real actor processes: a tiny Pong run that
trains, checkpoints and evaluates; SIGTERM leaving no process and no shared memory behind,
with a partial checkpoint that --resume finishes; a killed actor with no restarts
left stopping the run with one error line; bad configurations rejected with one line.

Every run is a subprocess (`python -m agents.r2d2...`) from the repository root, writing
under tmp_path. Processes are found through /proc (Linux)."""

from __future__ import annotations

import math
import os
import pathlib
import re
import signal
import subprocess
import time

import cli_support
import proc_support
import pytest
from cli_support import (
    TIMEOUT_S,
    check_ok,
    load_checkpoint,
    output_flags,
    read_csv,
    start_module,
    tiny_flags,
    video_frames,
)

pytestmark = pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs /proc")

TINY = [*tiny_flags("r2d2"), "--num_eval_steps=100"]


def run_module(module: str, args: list[str], timeout: float = TIMEOUT_S):
    return cli_support.run_module("r2d2", module, args, timeout)


# --------------------------------------------------------------------------------------
# The run's processes, through /proc
# --------------------------------------------------------------------------------------


def _spawned(children: dict[int, tuple[int, str]]) -> dict[int, tuple[int, str]]:
    """The spawned children: the actors, started first, then the evaluation process and the
    learner's frame-decoding processes."""
    return {pid: info for pid, info in children.items() if "spawn_main" in info[1]}


def _first_actor(children: dict[int, tuple[int, str]]) -> int:
    return min(_spawned(children))  # Actors start before the evaluation process.


def _read_chars(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/<pid>/io")


def _wait_until_learning(process: subprocess.Popen, timeout: float = 90) -> dict:
    """Waits for both actor processes and the evaluation process, then for the actors'
    messages to reach the learner (its read count grows: it has nothing else to read once
    actors run). Returns its children."""
    deadline = time.monotonic() + timeout
    while len(_spawned(proc_support.children(process.pid))) < 3:
        assert process.poll() is None, f"the run ended early with {process.returncode}"
        assert time.monotonic() < deadline, "actors did not start"
        time.sleep(0.1)
    baseline = _read_chars(process.pid)
    while _read_chars(process.pid) < baseline + 256_000:  # Some 30 chunks of Pong frames.
        assert process.poll() is None, f"the run ended early with {process.returncode}"
        assert time.monotonic() < deadline, "no data reached the learner"
        time.sleep(0.1)
    children = proc_support.children(process.pid)
    # Two actors and the evaluation process, then the learner's two frame-decoding processes
    # (started at its first update, so not necessarily yet).
    assert 3 <= len(_spawned(children)) <= 5
    return children


# --------------------------------------------------------------------------------------
# A run end to end
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_actors_train_checkpoint_and_evaluate(tmp_path):
    result = run_module(
        "run_atari",
        [*TINY, "--num_iterations=2", "--num_train_steps=400", *output_flags(tmp_path)],
    )
    check_ok(result)
    run_dir = tmp_path / "checkpoints" / "r2d2" / "Pong" / "seed_5"
    assert sorted(p.name for p in run_dir.glob("*.ckpt")) == [
        "iteration_0001.ckpt",
        "iteration_0002.ckpt",
    ]
    assert list((tmp_path / "tb" / "r2d2" / "Pong" / "seed_5").glob("events.out.tfevents.*"))

    rows = read_csv(run_dir / "results.csv")
    assert [r["iteration"] for r in rows] == ["1", "2"]
    for column in ("eval/episode_return", "eval/num_episodes", "train/episode_return"):
        assert column in rows[0], column
    steps = [int(r["step"]) for r in rows]
    assert 400 <= steps[0] < 800 <= steps[1]  # Actors report whole chunks: a little over.
    updates = [float(r["learner/num_updates"]) for r in rows]
    assert 0 < updates[0] < updates[1]
    for row in rows:
        assert float(row["train/steps_per_second"]) > 0
        assert float(row["learner/updates_per_second"]) > 0
        assert math.isfinite(float(row["learner/loss"]))
        assert float(row["actors/restarts"]) == 0
        assert float(row["eval/num_episodes"]) == 0  # 100 steps are less than a Pong game.

    payload = load_checkpoint(run_dir / "iteration_0002.ckpt")
    assert payload["metadata"]["agent"] == "r2d2"
    assert payload["metadata"]["environment_name"] == "Pong"
    state = payload["state"]
    assert state["iteration"] == 2 and state["steps_into_iteration"] == 0
    learner = state["learner"]
    assert set(learner) >= {"network", "target_network", "optimizer", "num_updates"}
    assert learner["num_updates"] == updates[1]
    assert learner["network"].keys() == learner["target_network"].keys()
    adam_steps = {int(s["step"]) for s in learner["optimizer"]["state"].values()}
    assert adam_steps == {learner["num_updates"]}
    trainer = state["trainer"]
    assert trainer["total_steps"] == steps[1]
    assert set(trainer["actor_steps"]) == {"0", "1"}
    assert all(n > 0 for n in trainer["actor_steps"].values())
    assert sum(trainer["actor_steps"].values()) == trainer["total_steps"]
    assert trainer["actor_restarts"] == [0, 0]
    assert state["parallel"]["num_actors"] == 2 and state["config"]["burn_in"] == 8

    recordings = tmp_path / "recordings"
    result = run_module(
        "eval_agent",
        [
            f"--checkpoint_dir={tmp_path / 'checkpoints'}",
            f"--recording_dir={recordings}",
            "--num_eval_steps=100",
            "--seed=5",
        ],
    )
    check_ok(result)
    videos = list(recordings.glob("*.mp4"))
    assert len(videos) == 1
    assert result.stdout.strip().splitlines()[-1] == str(videos[0])
    assert "iteration_0002.ckpt" in result.stderr
    frames = video_frames(videos[0])
    assert len(frames) == 101  # The first observation and 100 agent steps of one game.
    assert frames[0].shape == (210, 160, 3)
    assert any(f.std() > 0 for f in frames)


# --------------------------------------------------------------------------------------
# Interrupting a run
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_leaves_nothing_behind_and_resume_finishes(tmp_path):
    """SIGTERM to the learner alone, as a scheduler stops a job. Ctrl-C, which reaches the
    whole process group, is checked the same way by the NGU and Agent57 tests
    (test_intrinsic_agents_cli) and the Ray test, which run the same loop."""
    num_train_steps = 1_500
    args = [
        *TINY,
        "--num_iterations=1",
        f"--num_train_steps={num_train_steps}",
        *output_flags(tmp_path),
    ]
    run_dir = tmp_path / "checkpoints" / "r2d2" / "Pong" / "seed_5"
    log_path = tmp_path / "run.log"
    shm_before = proc_support.shm_entries()
    process = start_module("r2d2", "run_atari", args, log_path)
    code = proc_support.interrupt_and_check_clean_exit(
        process,
        log_path,
        shm_before,
        lambda: _wait_until_learning(process),
        lambda: process.send_signal(signal.SIGTERM),
    )
    assert code == 130, log_path.read_text()[-3000:]

    assert [p.name for p in run_dir.glob("*.ckpt")] == ["iteration_0001.partial.ckpt"]
    partial = load_checkpoint(run_dir / "iteration_0001.partial.ckpt")["state"]
    steps_done = partial["steps_into_iteration"]
    assert partial["iteration"] == 0
    assert 0 < steps_done == partial["trainer"]["total_steps"] < num_train_steps
    assert partial["learner"]["num_updates"] > 0  # It was learning when interrupted.

    result = run_module("run_atari", [*args, "--resume"])
    check_ok(result)
    assert "iteration_0001.partial.ckpt" in result.stderr  # Resumed from the partial one.
    assert [p.name for p in run_dir.glob("*.ckpt")] == ["iteration_0001.ckpt"]
    final = load_checkpoint(run_dir / "iteration_0001.ckpt")["state"]
    assert final["iteration"] == 1 and final["steps_into_iteration"] == 0
    total = final["trainer"]["total_steps"]
    # It finished the interrupted iteration, not a fresh one: a few chunks past the target.
    assert num_train_steps <= total < num_train_steps + 100
    assert final["learner"]["num_updates"] > partial["learner"]["num_updates"]
    rows = read_csv(run_dir / "results.csv")
    assert [(r["iteration"], int(r["step"])) for r in rows] == [("1", total)]


# --------------------------------------------------------------------------------------
# A dead actor and bad input
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_actor_without_restarts_left_stops_with_one_error_line(tmp_path):
    args = [
        *TINY,
        "--num_iterations=1",
        "--num_train_steps=100000",
        "--max_actor_restarts=0",
        *output_flags(tmp_path),
    ]
    process = start_module("r2d2", "run_atari", args, tmp_path / "run.log")
    children: dict[int, tuple[int, str]] = {}
    try:
        children = _wait_until_learning(process)
        os.kill(_first_actor(children), signal.SIGKILL)
        code = process.wait(timeout=30)
        log = (tmp_path / "run.log").read_text()
        assert code == 2, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        errors = [line for line in log.splitlines() if line.startswith("error:")]
        assert errors == [log.rstrip().splitlines()[-1]], log[-3000:]
        assert re.fullmatch(
            r"error: actor [01] died once \(last exit code -9\); stopping the run", errors[0]
        ), errors
        assert proc_support.wait_gone(children) == [], children
    finally:
        proc_support.kill_leftovers(process, children)


@pytest.mark.slow
@pytest.mark.parametrize(
    "flag, message",
    [
        ("--burn_in=24", "burn_in (24) must not exceed replay_period (8)"),
        ("--num_actors=0", "num_actors must be at least 1, got 0"),
    ],
)
def test_bad_configuration_is_one_error_line(tmp_path, flag, message):
    result = run_module(
        "run_atari", [*TINY, "--num_train_steps=100", flag, *output_flags(tmp_path)], timeout=60
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "checkpoints").exists()

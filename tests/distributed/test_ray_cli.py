"""End-to-end tests of the Ray backend (--backend=ray) through R2D2's command line:
- a tiny CartPole run with 2 Ray actors on a Ray instance it starts itself trains, evaluates
  and checkpoints; Ctrl-C writes a partial checkpoint and leaves no Ray process and no shared
  memory behind, and --resume finishes the run;
- a simulated two-node cluster (ray.cluster_utils.Cluster) that a run joins: its actors run
  on both nodes and the run finishes.

Loopback only: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (set before Ray is imported, here and in
the runs) makes every Ray node bind to 127.0.0.1. The tests join no cluster they did not
start, and stop only what they started. Processes are found through /proc (Linux)."""

from __future__ import annotations

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Before anything imports Ray.

import pathlib
import signal
import subprocess
import time

import cli_support
import proc_support
import pytest
from cli_support import (
    check_ok,
    load_checkpoint,
    output_flags,
    read_csv,
    start_module,
    subprocess_env,
    tiny_flags,
)

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = [
    pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs /proc"),
    pytest.mark.slow,
]

# R2D2's tiny configuration, on Ray; each test sets its own evaluation.
TINY = ["--backend=ray", *tiny_flags("r2d2")]


def _ray_env() -> dict[str, str]:
    return {**subprocess_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _start(args: list[str], log_path: pathlib.Path) -> subprocess.Popen:
    return start_module("r2d2", "run_atari", args, log_path, env=_ray_env())


def _run(module: str, args: list[str]) -> subprocess.CompletedProcess:
    return cli_support.run_module("r2d2", module, args, env=_ray_env())


def _started_by(pid: int) -> dict[int, tuple[int, str]]:
    """pid -> (start time, command line) of every process the run started: its descendants
    (Ray's raylet starts the actors), and the Ray processes of the session named after its
    pid, in case one was re-parented. Through /proc."""
    processes = {}  # pid -> (ppid, start time, command line)
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_support.stat(int(entry.name))):
            processes[int(entry.name)] = (stat[1], stat[2], proc_support.cmdline(int(entry.name)))
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, start, command) in processes.items():
            if ppid == parent and child not in found:
                found[child] = (start, command)
                frontier.append(child)
    session = f"_{pid} "  # Ray names a session session_<date>_<time>_<micros>_<driver pid>.
    for other, (_, start, command) in processes.items():
        if "/tmp/ray/session_" in command and session in command.replace("/", " "):
            found[other] = (start, command)
    return found


def _wait_for(path: pathlib.Path, process: subprocess.Popen, log: pathlib.Path, timeout=150):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {path.name}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


# --------------------------------------------------------------------------------------
# Train, evaluate, Ctrl-C, resume
# --------------------------------------------------------------------------------------


def test_ray_run_is_interrupted_cleanly_and_resume_finishes_it(tmp_path):
    # Long enough that 0.5 s after the first checkpoint the run is still inside iteration 2: with
    # 1,000 steps a fast idle machine (1,670 steps/s) finished all three iterations in that time,
    # so the interrupt found no iteration in progress and wrote no partial checkpoint.
    num_train_steps = 3_000
    args = [
        *TINY,
        "--environment_name=CartPole-v1",  # Evaluation games end within 200 steps.
        "--num_iterations=3",
        f"--num_train_steps={num_train_steps}",
        "--num_eval_steps=200",
        *output_flags(tmp_path),
    ]
    run_dir = tmp_path / "checkpoints" / "r2d2" / "CartPole-v1" / "seed_5"
    log_path = tmp_path / "run.log"
    shm_before = proc_support.shm_entries()
    process = _start(args, log_path)
    started: dict[int, tuple[int, str]] = {}
    try:
        _wait_for(run_dir / "iteration_0001.ckpt", process, log_path)
        started = _started_by(process.pid)
        time.sleep(0.5)  # Into iteration 2 (or 3 on a slow machine).
        interrupted_at = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # A terminal's Ctrl-C reaches the whole job.
        code = process.wait(timeout=30)
        exit_seconds = time.monotonic() - interrupted_at
        exited_at = time.time()
        log = log_path.read_text()
        assert code == 130, log[-3000:]
        assert exit_seconds < 15, exit_seconds
        assert "Traceback" not in log, log[-3000:]
        assert log.rstrip().endswith("interrupted")
        assert "Ray: 2 actors on 1 node(s)" in log
        commands = [command for _, command in started.values()]
        assert sum("gcs_server" in c or "raylet" in c for c in commands) >= 2, commands
        left = proc_support.wait_gone(started)
        assert left == [], {pid: started[pid] for pid in left}
    finally:
        proc_support.kill_leftovers(process, started)
    proc_support.assert_no_shared_memory_left(shm_before, exited_at)

    first = load_checkpoint(run_dir / "iteration_0001.ckpt")["state"]
    assert first["trainer"]["actor_restarts"] == [0, 0]
    assert set(first["trainer"]["actor_steps"]) == {"0", "1"}  # Both Ray actors delivered.
    assert first["learner"]["num_updates"] > 0
    [partial_path] = run_dir.glob("*.partial.ckpt")
    partial = load_checkpoint(partial_path)["state"]
    assert partial["steps_into_iteration"] > 0

    result = _run("run_atari", [*args, "--resume"])
    check_ok(result)
    assert partial_path.name in result.stderr  # Resumed from the partial one.
    assert not list(run_dir.glob("*.partial.ckpt"))
    final = load_checkpoint(run_dir / "iteration_0003.ckpt")["state"]
    total = final["trainer"]["total_steps"]
    assert 3 * num_train_steps <= total < 3 * num_train_steps + 100
    assert final["learner"]["num_updates"] > partial["learner"]["num_updates"]
    rows = read_csv(run_dir / "results.csv")
    assert [r["iteration"] for r in rows] == ["1", "2", "3"]
    assert int(rows[-1]["step"]) == total
    for row in rows:
        assert float(row["actors/restarts"]) == 0
        assert float(row["learner/updates_per_second"]) > 0
        assert float(row["eval/num_episodes"]) > 0  # The evaluation process played games.
    assert list((tmp_path / "tb" / "r2d2" / "CartPole-v1" / "seed_5").glob("events.out.*"))


# --------------------------------------------------------------------------------------
# Two nodes
# --------------------------------------------------------------------------------------


@pytest.fixture
def two_node_cluster():
    """A head and a worker node on this machine, one CPU each, stopped after the test."""
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def test_run_joins_a_two_node_cluster_and_uses_both_nodes(tmp_path, two_node_cluster):
    result = _run(
        "run_atari",
        [
            *TINY,
            "--environment_name=CartPole-v1",
            f"--ray_address={two_node_cluster.address}",
            "--num_iterations=1",
            # Enough steps that the second node's actor, which starts later, delivers some:
            # with 400, the first actor alone filled the iteration in a slower (ATEN default)
            # run.
            "--num_train_steps=2000",
            "--num_eval_steps=0",
            *output_flags(tmp_path),
        ],
    )
    check_ok(result)
    # One CPU per node and one per actor: the actors can only run on different nodes.
    assert "Ray: 2 actors on 2 node(s)" in result.stderr
    assert f"joined the cluster at {two_node_cluster.address}" in result.stderr
    run_dir = tmp_path / "checkpoints" / "r2d2" / "CartPole-v1" / "seed_5"
    rows = read_csv(run_dir / "results.csv")
    assert [r["iteration"] for r in rows] == ["1"]
    trainer = load_checkpoint(run_dir / "iteration_0001.ckpt")["state"]["trainer"]
    assert set(trainer["actor_steps"]) == {"0", "1"}
    # The run left the cluster it joined running.
    dead = [kind for node in two_node_cluster.list_all_nodes() for kind, _ in node.dead_processes()]
    assert not [kind for kind in dead if kind in ("gcs_server", "raylet")], dead

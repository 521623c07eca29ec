"""The suite's and the sweeps' worker pools leave no worker behind when their parent dies."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

from worker_pool import orphan_free_pool

TESTS = pathlib.Path(__file__).resolve().parent

PARENT = """
import os, sys, time
sys.path.insert(0, {tests!r})
from worker_pool import orphan_free_pool

if __name__ == "__main__":
    pool = orphan_free_pool(1)
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) counts as gone.
    status = pathlib.Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


def test_a_pool_worker_dies_when_its_parent_is_killed():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT.format(tests=str(TESTS))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)  # No handler, no cleanup: only the kernel's signal.
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), f"worker {worker} outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()


def test_a_background_pool_worker_runs_at_the_niceness_it_was_given():
    with orphan_free_pool(1, niceness=5) as pool:
        assert pool.submit(os.nice, 0).result(timeout=60) == os.nice(0) + 5

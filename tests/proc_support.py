"""Helpers shared by the tests that check a run leaves no process and no shared memory behind:
processes read through /proc, shared memory through /dev/shm (Linux), and the cleanup after a
failed test. Processes are named by (pid, start time), so a later process that reuses a pid is
never mistaken for, or killed as, one the run started."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable


def stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, or None if there is no such process."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # The name in (...) may hold spaces.
    return fields[0], int(fields[1]), int(fields[19])


def cmdline(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(pid: int) -> dict[int, tuple[int, str]]:
    """pid -> (start time, command line) of every child of `pid`."""
    found = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and (info := stat(int(entry.name))) and info[1] == pid:
            found[int(entry.name)] = (info[2], cmdline(int(entry.name)))
    return found


def running(pid: int, start_time: int) -> bool:
    """Whether that very process (not a later one with a reused pid) still exists."""
    info = stat(pid)
    return info is not None and info[2] == start_time


def shm_entries() -> dict[str, float]:
    """name -> change time of every entry of /dev/shm."""
    shm = pathlib.Path("/dev/shm")
    entries = {}
    for path in shm.iterdir() if shm.is_dir() else []:
        try:
            entries[path.name] = path.stat().st_ctime
        except OSError:
            continue  # Removed meanwhile.
    return entries


def assert_no_shared_memory_left(before: dict[str, float], exited_at: float) -> None:
    """Fails if /dev/shm gained an entry, absent from `before` (shm_entries()), that was made
    by the time.time() `exited_at` of a run's exit: one a later process made is not the run's."""
    left = {
        name
        for name, ctime in shm_entries().items()
        if name not in before and ctime <= exited_at + 1
    }
    assert not left, f"shared memory left behind: {sorted(left)}"


def wait_gone(processes: dict[int, tuple[int, str]], timeout: float = 10) -> list[int]:
    """Waits for the processes {pid: (start time, command line)} to exit; those left."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid, (start, _) in processes.items() if running(pid, start)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill_leftovers(process: subprocess.Popen, started: dict[int, tuple[int, str]]) -> None:
    """Test cleanup after a failure: the run and the processes it started, by pid. The
    resource tracker goes last, and only if it does not exit by itself once the others are
    gone: it unlinks the semaphores they leave."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    others = {pid: info for pid, info in started.items() if "resource_tracker" not in info[1]}
    for pid, (start, _) in others.items():
        if running(pid, start):
            _kill(pid)
    for pid in wait_gone(started, timeout=5):
        _kill(pid)


def interrupt_and_check_clean_exit(
    process: subprocess.Popen,
    log_path: pathlib.Path,
    shm_before: dict[str, float],
    wait_until_learning: Callable[[], dict[int, tuple[int, str]]],
    interrupt: Callable[[], None],
) -> int:
    """What an interrupted run must leave: waits until `process` (a run whose output goes to
    `log_path`) is learning (`wait_until_learning` returns its children then), sends the
    signal (`interrupt`), and checks that it exits within 15 s with one "interrupted" line and
    no traceback, leaving none of its processes and no shared memory behind (`shm_before`:
    shm_entries() taken before the run started). Its exit code."""
    started: dict[int, tuple[int, str]] = {}
    try:
        started = wait_until_learning()
        interrupted_at = time.monotonic()
        interrupt()
        code = process.wait(timeout=30)
        exit_seconds = time.monotonic() - interrupted_at
        assert exit_seconds < 15, f"exited {exit_seconds:.1f} s after the signal"
        exited_at = time.time()
        log = log_path.read_text()
        assert "Traceback" not in log and log.rstrip().endswith("interrupted"), log[-3000:]
        # Actors, the evaluation process and the resource tracker: all gone, none orphaned.
        assert wait_gone(started) == [], started
    finally:
        kill_leftovers(process, started)
    assert_no_shared_memory_left(shm_before, exited_at)
    return code


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)

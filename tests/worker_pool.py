"""The training runs of the suite's learning modules (tests/test_deception.py,
test_exploration.py and test_learning.py), all started in one pool of two worker processes (the
machine's 2 cores) when the session starts, longest first over all modules: the session waits
for all of them, and ending on the short runs leaves neither core idle while a long one goes on
alone. One pool for all of them, not one per module, for the same reason.

The workers run at the lowest CPU priority (nice 19) from the session's start. The tests
before the learning modules (command lines, actor processes) keep about one of the two cores
busy on average, and the runs take the rest without slowing those tests, whose timeouts
therefore hold as before; once the learning modules' tests wait on their runs, nothing else
competes. A run's result does not depend on its speed: each trains in the single-thread loop,
seeded."""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import pytest


@dataclasses.dataclass(frozen=True)
class PoolRuns:
    """What a module declares as POOL_RUNS: test name -> its runs (argument tuples of
    `worker`, a picklable module-level function), and a run's rough seconds, for the order."""

    runs_of_test: Mapping[str, Sequence[tuple]]
    seconds: Callable[[tuple], float]
    worker: Callable[..., object]


def die_with_parent(parent_pid: int, niceness: int = 0) -> None:
    """A pool worker's initializer: the worker is sent SIGTERM when the process that started
    it dies, however it dies (Linux's PR_SET_PDEATHSIG), so that killing a test session or a
    sweep leaves no worker training on (elsewhere than Linux, nothing does). `niceness` is
    added to the worker's CPU niceness (os.nice)."""
    if niceness:
        os.nice(niceness)
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # The parent died before the request took effect.
        os._exit(1)


def orphan_free_pool(max_workers: int, niceness: int = 0) -> ProcessPoolExecutor:
    """A pool of spawned worker processes that die with this process (die_with_parent), at
    `niceness` above this process's."""
    return ProcessPoolExecutor(
        max_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(), niceness),
    )


# The suite's workers yield the CPU to every other test (module docstring).
BACKGROUND_NICENESS = 19


def start_selected_runs(session: pytest.Session) -> Iterator[dict[str, dict[tuple, Future]]]:
    """For a session-scoped fixture to `yield from`: {module name: {run: future of
    worker(*run)}} for the runs of the tests this session selected, in every module that
    declares POOL_RUNS. Runs not yet started when the session ends are cancelled."""
    jobs: dict[tuple[str, tuple], PoolRuns] = {}
    for item in session.items:
        declared = getattr(item.module, "POOL_RUNS", None)
        if declared is None:
            continue
        for run in declared.runs_of_test.get(item.originalname, ()):
            jobs[(item.module.__name__, run)] = declared
    order = sorted(jobs, key=lambda job: -jobs[job].seconds(job[1]))  # stable: ties keep order
    futures: dict[str, dict[tuple, Future]] = {}
    with orphan_free_pool(2, BACKGROUND_NICENESS) as pool:
        for module, run in order:
            futures.setdefault(module, {})[run] = pool.submit(jobs[(module, run)].worker, *run)
        yield futures
        for by_run in futures.values():
            for future in by_run.values():
                future.cancel()

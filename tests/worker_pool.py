"""The training runs of a test module's selected tests, started together in one pool of two
worker processes (the machine's 2 cores), longest first, so neither core waits while one
test's last seed runs alone."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import pytest


def runs_of_selected_tests(
    request: pytest.FixtureRequest,
    runs_of_test: Mapping[str, Sequence[tuple]],
    seconds: Callable[[tuple], float],
    worker: Callable[..., object],
) -> Iterator[dict[tuple, Future]]:
    """For a module-scoped fixture to `yield from`: {run: future of worker(*run)} for the runs
    of the tests of `request`'s module that this session selected.

    runs_of_test: test name -> its runs (argument tuples of `worker`, a picklable module-level
    function); seconds: a run's rough duration, for the order. Runs not yet started when the
    module ends are cancelled."""
    selected = {item.name for item in request.session.items if item.module is request.module}
    runs = [run for test, runs in runs_of_test.items() if test in selected for run in runs]
    runs.sort(key=lambda run: -seconds(run))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        futures = {run: pool.submit(worker, *run) for run in runs}
        yield futures
        for future in futures.values():
            future.cancel()

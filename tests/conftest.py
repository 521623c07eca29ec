"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
from worker_pool import start_selected_runs


@pytest.fixture(scope="session", autouse=True)
def training_runs(request):
    """{module name: {run: future}}: the learning modules' training runs, in one pool
    (worker_pool), started with the session's first test so that they use the cores the
    earlier tests leave idle."""
    yield from start_selected_runs(request.session)

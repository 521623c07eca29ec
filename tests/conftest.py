"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
from worker_pool import start_selected_runs


@pytest.fixture(scope="session")
def training_runs(request):
    """{module name: {run: future}}: the learning modules' training runs, in one pool
    (worker_pool)."""
    yield from start_selected_runs(request.session)

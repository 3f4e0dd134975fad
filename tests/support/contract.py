"""Fixtures shared by the execution-contract tests (issue 12): a database with the
``contract_runs`` table, a client and ``pgqueue-worker`` processes on the contract jobs.
Test modules import them by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pgqueue import TaskBackend
from tests.support.contract_jobs import make_intervals_table
from tests.support.crash import WorkerProcess, worker_processes

JOBS = "tests.support.contract_jobs"


@pytest.fixture
def cdsn(dsn: str) -> str:
    """A fresh migrated database with the ``contract_runs`` table."""
    make_intervals_table(dsn)
    return dsn


@pytest.fixture
def client(cdsn: str) -> Iterator[TaskBackend]:
    """A backend on that database that knows the contract jobs."""
    with TaskBackend(cdsn, task_paths=[JOBS]) as backend:
        yield backend


@pytest.fixture
def procs() -> Iterator[Any]:
    """``procs(dsn, *args)`` starts a ``pgqueue-worker`` on the contract jobs (killed after)."""
    with worker_processes() as start:

        def start_contract(dsn: str, *args: str) -> WorkerProcess:
            # the last --task-paths wins over the crash jobs' default
            return start(dsn, "--task-paths", JOBS, *args)

        yield start_contract

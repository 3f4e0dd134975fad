"""Claims on a PostgreSQL that JIT-compiles (the distribution's packages; see
:mod:`tests.support.debian_server`), which the embedded server cannot show.

Found on PostgreSQL 15 from Debian (``jit = on``): once the task table held about 10,000 rows,
the generic plan the claimer keeps for a worker of several jobs passed ``jit_above_cost``,
and every claim spent ~0.9 s compiling a plan that runs in ~2 ms. ``pgqueue-worker`` drained
4 tasks a second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import pgqueue
from pgqueue._db import connect
from pgqueue._schema import migrate
from tests.support.debian_server import DebianServer, jit_bin_dir
from tests.support.fixtures import TEST_JOBS, WorkerThread, sql
from tests.support.plans import explain_as_claimer

TASKS = 10_000


@pytest.fixture(scope="module")
def jit_server() -> Iterator[DebianServer]:
    bin_dir = jit_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "no packaged PostgreSQL with JIT (lib/llvmjit.so) under /usr/lib/postgresql: "
            "apt-get install postgresql-15 (.ci/run does)"
        )
    server = DebianServer(bin_dir)
    yield server
    server.stop()


@pytest.fixture
def jit_dsn(jit_server: DebianServer) -> Iterator[str]:
    """A fresh database with pgqueue's schema and ``TASKS`` queued, analyzed, on a server
    that JIT-compiles every plan whose estimated cost passes ``jit_above_cost``."""
    with connect(jit_server.dsn()) as conn:
        conn.execute("DROP DATABASE IF EXISTS jit WITH (FORCE)")
        conn.execute("CREATE DATABASE jit")
    dsn = jit_server.dsn("jit")
    migrate(dsn, "pgqueue")
    with connect(dsn) as conn:
        assert conn.execute("SELECT pg_jit_available() AS on").fetchone()["on"]
    with pgqueue.TaskBackend(dsn, task_paths=[TEST_JOBS]) as backend:
        for start in range(0, TASKS, 1000):
            backend.queue_tasks("add", [{"a": n, "b": 1} for n in range(start, start + 1000)])
    sql(dsn, "ANALYZE pgqueue.task")
    yield dsn


def _claim_ops(dsn: str) -> list[Any]:
    """Every claim statement the claimer may run: with and without flow control, for a
    worker of several jobs and of one job."""
    with pgqueue.TaskBackend(dsn, task_paths=[TEST_JOBS]) as backend:
        store = backend.store
        return [
            claim(queues=["tasks"], jobs=jobs, limit=20, worker="x")
            for claim in (store.claim_tasks, store.claim_unlimited_tasks)
            for jobs in (["add", "sleep", "record"], ["add"])
        ]


def test_the_claimers_plans_are_never_jit_compiled(jit_dsn: str) -> None:
    """Each claim statement, prepared as the claimer keeps it (one generic plan), runs without
    JIT; so does each one sent unprepared, as through a transaction pooler (planned with its
    parameters: ``LIMIT 20`` keeps its cost far below ``jit_above_cost``)."""
    for op in _claim_ops(jit_dsn):
        with connect(jit_dsn, autocommit=False) as conn:
            explained = explain_as_claimer(conn, op.sql, op.params, runs=2)
        assert "JIT" not in explained, (op.sql[:80], explained["JIT"])
        assert explained["Execution Time"] < 200, explained
        with connect(jit_dsn, autocommit=False) as conn:
            conn.prepare_threshold = None
            row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + op.sql, op.params).fetchone()
            conn.rollback()
        assert row is not None
        assert "JIT" not in row["QUERY PLAN"][0], (op.sql[:80], row["QUERY PLAN"][0]["JIT"])


@pytest.mark.slow
def test_a_worker_of_several_jobs_drains_at_speed_on_a_jit_server(jit_dsn: str) -> None:
    """A worker of the test jobs drains the 10,000 queued tasks in seconds (claims of 20
    compiled at ~0.9 s each took about 450 s)."""
    worker = pgqueue.Worker(jit_dsn, task_paths=[TEST_JOBS], backlog=20, burst=True)
    started = time.monotonic()
    handle = WorkerThread(worker)
    handle.thread.join(60)
    elapsed = time.monotonic() - started
    if handle.thread.is_alive():
        handle.stop()
    left = sql(jit_dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE status <> 1")[0]["n"]
    assert left == 0, f"{left} of {TASKS} tasks left after {elapsed:.0f} s"
    assert elapsed < 60

"""pgqueue's figures: enqueue one at a time and in bulk, drain, pickup latency."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from typing import Any

from pgqueue import TaskBackend, Worker
from pgqueue._db import connect
from pgqueue._jobs import JobRegistry
from pgqueue._schema import migrate

from .common import ROOT, PickupWorker, Row, Sizes, analyze, child_env, rate, timer

JOBS = "benchmarks.jobs"

#: Used only while the backend has no bulk ``queue_tasks``: the INSERT of ``QUEUE_TASK``
#: with one row per array element (same table, defaults and trigger), in one statement.
MULTI_ROW_INSERT = """
INSERT INTO pgqueue.task (name, queue, kwargs, meta_params, run_at, max_retries)
SELECT 'noop', 'tasks', k, '{}'::jsonb, now(), 0 FROM unnest(%(kwargs)s::jsonb[]) AS k
"""


def registry() -> JobRegistry:
    return JobRegistry.load([JOBS])


def enqueue_one(backend: TaskBackend, count: int) -> float:
    """Queue ``count`` no-op tasks with one ``queue_task`` call each; return jobs/s."""
    with timer() as elapsed:
        for _ in range(count):
            backend.queue_task("noop")
    return rate(count, elapsed())


def enqueue_bulk(backend: TaskBackend, count: int, batch: int) -> tuple[float, str]:
    """Queue ``count`` no-op tasks ``batch`` at a time; return (jobs/s, how)."""
    bulk = getattr(backend, "queue_tasks", None)
    with timer() as elapsed:
        for start in range(0, count, batch):
            size = min(batch, count - start)
            if bulk is not None:
                bulk("noop", [{}] * size)
            else:
                with backend.connection() as conn:
                    conn.execute(MULTI_ROW_INSERT, {"kwargs": ["{}"] * size})
    how = "queue_tasks" if bulk is not None else "multi-row INSERT (no queue_tasks yet)"
    return rate(count, elapsed()), how


def drain(dsn: str, count: int, concurrency: int, **options: Any) -> float:
    """Run the pre-filled queue to completion with one worker; return jobs/s."""
    analyze(dsn)
    worker = Worker(dsn, registry=registry(), backlog=concurrency, burst=True, **options)
    with timer() as elapsed:
        worker.run()
    check_drained(dsn)
    return rate(count, elapsed())


def check_drained(dsn: str) -> None:
    """Raise unless every task of the drain ended SUCCESS."""
    with connect(dsn) as conn:
        left = conn.execute(
            "SELECT count(*) AS n, string_agg(DISTINCT status::text, ',') AS states,"
            " max(error) AS error FROM pgqueue.task WHERE status <> 1"
        ).fetchone()
    if left and left["n"]:
        raise RuntimeError(f"pgqueue drain left {left['n']} tasks unfinished: {left}")


def drain_cli(dsn: str, count: int) -> float:
    """Run the pre-filled queue to completion as an operator would: ``pgqueue-worker --burst``
    with its default options (backlog, logging at INFO), its log going to a file as under a
    service manager; the figure includes the process's start-up. Returns jobs/s."""
    analyze(dsn)
    env = child_env()
    env["PGQUEUE_DSN"] = dsn
    command = [sys.executable, "-m", "pgqueue._worker_cli", "--task-paths", JOBS, "--burst"]
    with tempfile.TemporaryFile() as log, timer() as elapsed:
        subprocess.run(command, env=env, cwd=ROOT, stdout=log, stderr=log, check=True)
    check_drained(dsn)
    return rate(count, elapsed())


def run(dsn: str, sizes: Sizes, row: Row) -> None:
    """One run of every pgqueue measurement on the fresh database ``dsn``."""
    migrate(dsn, "pgqueue")
    with TaskBackend(dsn, registry=registry()) as backend:
        backend.queue_task("noop")  # open the pool: connecting is not enqueueing
        row.enqueue_one.append(enqueue_one(backend, sizes.single))
        with connect(dsn) as conn:
            conn.execute("DELETE FROM pgqueue.task")
        bulk, how = enqueue_bulk(backend, sizes.jobs, sizes.batch)
        row.enqueue_bulk.append(bulk)
        if how not in row.notes:
            row.notes.append(how)
        row.drain.append(drain(dsn, sizes.jobs, sizes.concurrency))
        with connect(dsn) as conn:
            conn.execute("DELETE FROM pgqueue.task")
        enqueue_bulk(backend, sizes.jobs, sizes.batch)
        row.drain_cli.append(drain_cli(dsn, sizes.jobs))
        worker = PickupWorker("pgqueue", dsn)
        try:
            row.pickup += worker.measure(
                lambda key: backend.queue_task("pickup", key=key), sizes.samples
            )
        finally:
            worker.close()

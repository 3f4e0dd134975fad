"""Known sets of tasks and workers for the operations tests, written straight into the tables
with timestamps relative to the database clock, so views can be checked for exact numbers.

Statements run in one transaction with the checks that read them, where exactness matters:
``now()`` is the same for every statement of a transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from pgqueue._db import connect

INSERT_TASK = """
INSERT INTO pgqueue.task (name, queue, status, lock_id, kwargs, error, traceback, attempts,
                          worker, time_queued, run_at, time_started, time_ended, expiry)
VALUES (%(name)s, %(queue)s, %(status)s, %(lock_id)s, %(kwargs)s::jsonb, %(error)s,
        %(traceback)s, %(attempts)s, %(worker)s,
        now() - %(queued)s * interval '1 second',
        now() - COALESCE(%(run_at)s, %(queued)s) * interval '1 second',
        now() - %(started)s * interval '1 second',
        now() - %(ended)s * interval '1 second',
        now() - %(expiry)s * interval '1 second')
RETURNING id::text AS id
"""

INSERT_WORKER = """
INSERT INTO pgqueue.worker (id, hostname, pid, queues, backlog, lease_seconds, started_at,
                            heartbeat_at, stopped_at)
VALUES (%(id)s, 'host-a', 4242, %(queues)s, 4, %(lease)s, now() - interval '1 hour',
        now() - %(heartbeat)s * interval '1 second',
        now() - %(stopped)s * interval '1 second')
"""


@contextmanager
def transaction(dsn: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """One connection in one transaction (rolled back at the end: nothing is left behind)."""
    with connect(dsn, autocommit=False) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def add_task(
    conn: psycopg.Connection[dict[str, Any]],
    name: str,
    status: int,
    *,
    queue: str = "tasks",
    queued: float = 0.0,
    run_at: float | None = None,
    started: float | None = None,
    ended: float | None = None,
    expiry: float | None = None,
    worker: str | None = None,
    error: str | None = None,
    traceback: str | None = None,
    lock_id: str | None = None,
    kwargs: str = "{}",
) -> str:
    """Insert one task; times are seconds before now() (None: not set). Returns its id."""
    row = conn.execute(
        INSERT_TASK,
        {
            "name": name,
            "queue": queue,
            "status": status,
            "lock_id": lock_id,
            "kwargs": kwargs,
            "error": error,
            "traceback": traceback,
            "attempts": 0 if started is None else 1,
            "worker": worker,
            "queued": queued,
            "run_at": run_at,
            "started": started,
            "ended": ended,
            "expiry": expiry,
        },
    ).fetchone()
    assert row is not None
    return str(row["id"])


def add_worker(
    conn: psycopg.Connection[dict[str, Any]],
    worker_id: str,
    *,
    heartbeat: float = 0.0,
    lease: float = 10.0,
    stopped: float | None = None,
    queues: tuple[str, ...] = ("tasks",),
) -> None:
    """Register a worker whose last heartbeat was ``heartbeat`` seconds ago."""
    conn.execute(
        INSERT_WORKER,
        {
            "id": worker_id,
            "queues": list(queues),
            "lease": lease,
            "heartbeat": heartbeat,
            "stopped": stopped,
        },
    )

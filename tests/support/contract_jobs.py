"""Jobs for the execution-contract tests (issue 12): each execution records its interval.

Every execution inserts a row into ``contract_runs`` (made by :func:`make_intervals_table`)
when it starts, moves ``last_seen`` forward while it runs (every ``STEP`` seconds), and sets
``ended_at`` and ``note`` when its body ends (``returned``, or the exception's class name). A
test measures from these rows, on the database clock, whether two executions of the same call
overlapped and for how long, and how soon an execution stopped after it was told to.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pgqueue
from pgqueue._retry import ExponentialBackoff
from tests.support.fixtures import sql

#: Retries come back quickly in tests.
FAST = ExponentialBackoff(base=0.1, cap=0.5)

#: Seconds between two ``last_seen`` updates of a running execution.
STEP = 0.05

INTERVALS_TABLE = """
CREATE TABLE contract_runs (
    run serial PRIMARY KEY,
    task_id uuid NOT NULL,
    attempt int NOT NULL,
    worker text NOT NULL,
    pid int NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seen timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at timestamptz,
    note text
)
"""


def make_intervals_table(dsn: str) -> None:
    """Create the ``contract_runs`` table the jobs below write to."""
    sql(dsn, INTERVALS_TABLE)


def _start(consumer: pgqueue.TaskConsumer) -> int:
    with consumer.backend.connection() as conn:
        row = conn.execute(
            "INSERT INTO contract_runs (task_id, attempt, worker, pid) VALUES (%s, %s, %s, %s) "
            "RETURNING run",
            (consumer.task_id, consumer.attempt, consumer.worker, os.getpid()),
        ).fetchone()
    assert row is not None
    return int(row["run"])


def _seen(consumer: pgqueue.TaskConsumer, run: int) -> None:
    with consumer.backend.connection() as conn:
        conn.execute(
            "UPDATE contract_runs SET last_seen = clock_timestamp() WHERE run = %s", (run,)
        )


def _end(consumer: pgqueue.TaskConsumer, run: int, note: str) -> None:
    with consumer.backend.connection() as conn:
        conn.execute(
            "UPDATE contract_runs SET last_seen = clock_timestamp(), "
            "ended_at = clock_timestamp(), note = %s WHERE run = %s",
            (note, run),
        )


def _run(consumer: pgqueue.TaskConsumer, seconds: float, check: bool) -> None:
    """Work for ``seconds`` in steps of ``STEP``, calling ``consumer.check()`` between steps
    when ``check``; record the interval and how the body ended."""
    run = _start(consumer)
    note = "returned"
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if check:
                consumer.check()
            time.sleep(STEP)
            _seen(consumer, run)
    except BaseException as exc:
        note = type(exc).__name__
        raise
    finally:
        _end(consumer, run, note)


@pgqueue.job(can_overlap=False, max_retries=0)
def exclusive(consumer: pgqueue.TaskConsumer, key: str, seconds: float) -> dict[str, Any]:
    """A non-overlapping call (lock_id from ``key``) that works ``seconds``, checking
    ``consumer.check()`` every 50 ms; no retries."""
    _run(consumer, seconds, check=True)
    return {"key": key, "attempt": consumer.attempt, "pid": os.getpid()}


@pgqueue.job(can_overlap=False, time_limit=1.0, max_retries=1, backoff=FAST)
def overrunning(consumer: pgqueue.TaskConsumer, key: str, seconds: float) -> dict[str, Any]:
    """A non-overlapping thread job with a 1 s time limit that works ``seconds`` without ever
    calling ``consumer.check()``; one retry."""
    _run(consumer, seconds, check=False)
    return {"key": key, "attempt": consumer.attempt}


@pgqueue.job()
def slow_sibling(consumer: pgqueue.TaskConsumer, seconds: float) -> str:
    """A job without time limit that works ``seconds`` and never checks."""
    _run(consumer, seconds, check=False)
    return "sibling done"


@pgqueue.job(max_retries=2, backoff=FAST)
def returns_quickly(consumer: pgqueue.TaskConsumer, n: int, seconds: float) -> dict[str, int]:
    """Work ``seconds`` (never checking), then return ``{"n": n}``; two retries."""
    _run(consumer, seconds, check=False)
    return {"n": n}


@pgqueue.job(max_retries=0)
def brief(consumer: pgqueue.TaskConsumer, n: int) -> dict[str, int]:
    """About 50 ms of work in 10 ms steps, calling ``consumer.check()`` between steps; returns
    ``{"n": n}``. The interval row is written once, at the end (``note`` says how it ended)."""
    with consumer.backend.connection() as conn:
        started = conn.execute("SELECT clock_timestamp() AS at").fetchone()
    note = "returned"
    try:
        for _ in range(5):
            consumer.check()
            time.sleep(0.01)
        return {"n": n}
    except BaseException as exc:
        note = type(exc).__name__
        raise
    finally:
        with consumer.backend.connection() as conn:
            conn.execute(
                "INSERT INTO contract_runs (task_id, attempt, worker, pid, started_at, ended_at, "
                "note) VALUES (%s, %s, %s, %s, %s, clock_timestamp(), %s)",
                (
                    consumer.task_id,
                    consumer.attempt,
                    consumer.worker,
                    os.getpid(),
                    started["at"] if started else None,
                    note,
                ),
            )


@pgqueue.job(time_limit=1.0, max_retries=0)
def ignores_limit(consumer: pgqueue.TaskConsumer, seconds: float) -> str:
    """A thread job with a 1 s time limit that works ``seconds`` and never checks it."""
    _run(consumer, seconds, check=False)
    return "finished"

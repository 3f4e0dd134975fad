"""Jobs for the crash-safety tests: each execution is recorded in the ``crash_runs`` table
(made by :func:`tests.support.crash.make_runs_table`) so a test can count real executions."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pgqueue
from pgqueue._retry import ExponentialBackoff, Retry

#: Retries come back quickly in tests.
FAST = ExponentialBackoff(base=0.1, cap=0.5)


def record_run(consumer: pgqueue.TaskConsumer, note: str = "") -> None:
    """Insert one row for this execution (task, attempt, worker, pid)."""
    with consumer.backend.connection() as conn:
        conn.execute(
            "INSERT INTO crash_runs (task_id, attempt, worker, pid, note) "
            "VALUES (%s, %s, %s, %s, %s)",
            (consumer.task_id, consumer.attempt, consumer.worker, os.getpid(), note),
        )


def record_end(consumer: pgqueue.TaskConsumer) -> None:
    """Set ``ended_at`` on this execution's row (the chaos run measures overlaps with it).

    Best effort: when the server is restarting the end goes unrecorded (the run then counts
    as ending where it started) rather than failing an attempt whose work is done.
    """
    try:
        with consumer.backend.connection() as conn:
            conn.execute(
                "UPDATE crash_runs SET ended_at = clock_timestamp() "
                "WHERE task_id = %s AND attempt = %s AND pid = %s AND ended_at IS NULL",
                (consumer.task_id, consumer.attempt, os.getpid()),
            )
    except Exception as exc:
        consumer.logger.warning("could not record the end of this run: %s", exc)


@pgqueue.job(can_overlap=False, max_retries=3, backoff=FAST)
def tracked(
    consumer: pgqueue.TaskConsumer, key: str, seconds: float = 0.0, first_only: bool = False
) -> dict[str, Any]:
    """Record the run, then sleep ``seconds`` (only on attempt 1 when ``first_only``), then
    record its end."""
    record_run(consumer)
    if consumer.attempt == 1 or not first_only:
        time.sleep(seconds)
    record_end(consumer)
    return {"key": key, "attempt": consumer.attempt, "worker": consumer.worker}


@pgqueue.job(max_retries=3, backoff=FAST)
def hold_gil(consumer: pgqueue.TaskConsumer, seconds: float, burst: float) -> list[float]:
    """Run for ``seconds``: bursts of ``burst`` seconds that hold the GIL (a C loop that never
    lets another thread run), each followed by 0.2 s of plain Python work; return the
    measured burst lengths (F04)."""
    record_run(consumer)
    per_second = _sum_rate()
    bursts: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        sum(range(int(per_second * burst)))  # holds the GIL throughout
        bursts.append(time.monotonic() - started)
        python_until = time.monotonic() + 0.2
        while time.monotonic() < python_until:
            pass  # bytecode: other threads get the GIL every 5 ms
    return bursts


def _sum_rate() -> float:
    """How many integers ``sum(range(n))`` adds per second on this machine."""
    n = 2_000_000
    started = time.perf_counter()
    sum(range(n))
    return n / (time.perf_counter() - started)


@pgqueue.job(max_retries=3)
def poison(consumer: pgqueue.TaskConsumer) -> None:
    """Kill the worker process running it, every time (F20)."""
    record_run(consumer)
    os.kill(os.getpid(), signal.SIGKILL)


@pgqueue.job(max_retries=3, backoff=FAST)
def flaky(consumer: pgqueue.TaskConsumer, failures: int) -> int:
    """Raise ValueError on the first ``failures`` attempts, then return the attempt."""
    record_run(consumer)
    if consumer.attempt <= failures:
        raise ValueError(f"attempt {consumer.attempt} fails")
    return consumer.attempt


def _overflowing(attempt: int) -> float:
    """A backoff with the bug F24 found: the power is computed before any cap."""
    return min(600.0, 2.0 ** (attempt * 2000))


@pgqueue.job(max_retries=3, backoff=_overflowing)
def overflowing_backoff(consumer: pgqueue.TaskConsumer) -> None:
    """Fails, so the worker asks its backoff for a delay, which raises OverflowError."""
    raise ValueError("fails")


@pgqueue.job(max_retries=3, retry_on=(ConnectionError,), backoff=FAST)
def picky(consumer: pgqueue.TaskConsumer, error: str) -> None:
    """Retries only ConnectionError; raises the named builtin exception."""
    record_run(consumer)
    raise {"ConnectionError": ConnectionError, "ValueError": ValueError}[error](error)


@pgqueue.job(max_retries=1)
def asks_retry(consumer: pgqueue.TaskConsumer, times: int) -> int:
    """Raise Retry (countdown 0.2 s) on the first ``times`` attempts."""
    record_run(consumer)
    if consumer.attempt <= times:
        raise Retry(f"not ready at attempt {consumer.attempt}", countdown=0.2)
    return consumer.attempt


@pgqueue.job(time_limit=0.5, max_retries=1, backoff=FAST)
def cooperative(consumer: pgqueue.TaskConsumer, seconds: float) -> str:
    """A thread job that calls consumer.check() while it works (time limit 0.5 s)."""
    record_run(consumer)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        consumer.check()
        time.sleep(0.02)
    return "done"


@pgqueue.job(time_limit=0.5)
async def async_slow(consumer: pgqueue.TaskConsumer, seconds: float) -> str:
    """An async job cancelled at its time limit of 0.5 s."""
    await asyncio.sleep(seconds)
    return "done"


@pgqueue.job(can_overlap=False)
async def async_wait(consumer: pgqueue.TaskConsumer, key: str, seconds: float) -> str:
    """An async job that sleeps (until revoked)."""
    await asyncio.sleep(seconds)
    return key


@pgqueue.job()
def blob_size(consumer: pgqueue.TaskConsumer, blob: str) -> int:
    """Return the length of a big argument (F19)."""
    return len(blob)


@pgqueue.job()
def cut_finish_connection(consumer: pgqueue.TaskConsumer) -> str:
    """Terminate the worker's own pool connections just before returning, so the finish
    write meets a dead connection (F05)."""
    record_run(consumer)
    with consumer.backend.connection() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'pgqueue-worker' AND datname = current_database()"
        )
    return "finished"


@pgqueue.job()
def stoppable(consumer: pgqueue.TaskConsumer, seconds: float) -> str:
    """A thread job without time limit that stops when revoked (consumer.check())."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        consumer.check()
        time.sleep(0.02)
    return "done"


@pgqueue.job()
def host_clock(consumer: pgqueue.TaskConsumer, seconds: float = 0.0) -> float:
    """Sleep, then return the worker host's wall clock (time.time(), seconds) (F17)."""
    time.sleep(seconds)
    return time.time()


@pgqueue.job(time_limit=1.0)
def overrun(consumer: pgqueue.TaskConsumer, seconds: float) -> str:
    """A thread job with a 1 s time limit that never checks it (sleeps ``seconds``)."""
    record_run(consumer)
    time.sleep(seconds)
    return "finished"


@pgqueue.job()
def nul_result(consumer: pgqueue.TaskConsumer, raise_it: bool) -> str:
    """Return (or raise with) a string holding a NUL character, which PostgreSQL refuses."""
    if raise_it:
        raise ValueError("bad\x00byte")
    return "a\x00b"

"""F24 runaway numbers: one task's attempt count never stops a worker or the fleet.

Exponential backoff is capped before the power is computed (in Python and in the rescue
statement), a row whose ``attempts`` is at the integer limit ends FAILURE at its claim instead
of failing the claim for every task, and an outcome that cannot be computed ends its task.
"""

from __future__ import annotations

import math
import signal
import time
from typing import Any

import pytest

from pgqueue import TaskBackend, states
from pgqueue._retry import DEFAULT_BACKOFF, ExponentialBackoff
from tests.support import crash as crash_support
from tests.support.crash import wait_status
from tests.support.fixtures import sql

#: Seconds per test (subprocesses, real workers): not in the quick loop.
pytestmark = pytest.mark.slow

runs_dsn = crash_support.runs_dsn
client_jobs = crash_support.client_jobs
procs = crash_support.procs

INT_MAX = 2**31 - 1


def test_backoff_is_capped_before_the_power() -> None:
    """Attempt numbers far past the float range give the cap, never OverflowError."""
    for attempt in (1_025, 10**6, INT_MAX):
        assert ExponentialBackoff(jitter=0)(attempt) == 600
        assert ExponentialBackoff(base=0.1, factor=10, cap=5, jitter=0)(attempt) == 5
    assert ExponentialBackoff(base=0, jitter=0)(INT_MAX) == 0
    assert ExponentialBackoff(factor=1, jitter=0)(INT_MAX) == 1
    assert ExponentialBackoff(base=1, factor=2, cap=5, jitter=0)(3) == 4  # below the cap
    assert DEFAULT_BACKOFF.max_exponent == 10  # 2 ** 10 = 1024 s >= 600 s
    for bad in ({"cap": math.inf}, {"base": math.nan}, {"factor": math.inf}):
        with pytest.raises(ValueError, match="finite"):
            ExponentialBackoff(**bad)


def test_task_at_attempt_1025_ends_retry_under_a_worker(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """A failing task whose 1,025th attempt fails goes back to RETRY within the cap (the
    callback used to raise OverflowError, leaving it STARTED for ever); the one after that,
    with no retries left, ends FAILURE."""
    retried = client.queue_task("flaky", failures=10**6)
    last = client.queue_task("flaky", failures=10**6)
    sql(
        runs_dsn,
        "UPDATE pgqueue.task SET attempts = 1024, max_retries = 5000 WHERE id = %s",
        (retried,),
    )
    sql(
        runs_dsn,
        "UPDATE pgqueue.task SET attempts = 1024, max_retries = 1024 WHERE id = %s",
        (last,),
    )
    worker = procs(runs_dsn, "--lease", "5")
    row = wait_status(runs_dsn, retried, {states.RETRY, states.FAILURE}, timeout=20)
    assert row["status"] == states.RETRY and row["attempts"] >= 1025
    assert row["error"] == f"ValueError: attempt {row['attempts']} fails"
    ended = wait_status(runs_dsn, last, {states.FAILURE, states.RETRY}, timeout=20)
    assert ended["status"] == states.FAILURE and ended["attempts"] == 1025
    assert "gave up after 1025 attempts" in ended["error"]
    assert worker.process.poll() is None, worker.log


def test_lost_task_at_attempt_1025_is_rescued_without_the_worker_exiting(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """The rescue statement of a live worker rescues a STARTED task of a lost worker whose
    attempts are past the float range of ``factor ^ (attempts - 1)`` ("value out of range"
    made every worker exit 1 at its first sweep), and the worker goes on working."""
    lost = client.queue_task("flaky", failures=10**6)
    sql(
        runs_dsn,
        "UPDATE pgqueue.task SET status = 5, attempts = 1025, max_retries = 5000, "
        "worker = 'gone-worker', time_started = now() WHERE id = %s",
        (lost,),
    )
    worker = procs(runs_dsn, "--lease", "1")
    row = wait_status(runs_dsn, lost, {states.RETRY, states.FAILURE, states.SUCCESS}, 20)
    assert row["status"] == states.RETRY, row
    assert row["error"].startswith("worker lost: gone-worker")
    assert row["run_at"] <= sql(runs_dsn, "SELECT now() + interval '600 s' AS t")[0]["t"]
    after = client.queue_task("flaky", failures=0)
    assert wait_status(runs_dsn, after, {states.SUCCESS, states.FAILURE}, 20)["status"] == (
        states.SUCCESS
    )
    time.sleep(1.0)  # several more sweeps
    assert worker.process.poll() is None, worker.log


def test_attempts_at_the_integer_limit_does_not_stop_the_claim(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """A row with ``attempts`` = 2^31-1 ends FAILURE with the reason at its claim; the tasks
    claimed with it and after it run (``attempts + 1`` used to fail every claim)."""
    worn = client.queue_task("flaky", failures=0, priority=10)
    sql(
        runs_dsn,
        "UPDATE pgqueue.task SET attempts = %s, max_retries = %s WHERE id = %s",
        (INT_MAX, INT_MAX, worn),
    )
    others = [client.queue_task("flaky", failures=0) for _ in range(3)]
    worker = procs(runs_dsn, "--lease", "5", "--backlog", "4")
    row = wait_status(runs_dsn, worn, {states.FAILURE, states.SUCCESS}, 20)
    assert row["status"] == states.FAILURE and row["attempts"] == INT_MAX
    assert "attempts reached its limit" in row["error"]
    for task_id in others:
        assert wait_status(runs_dsn, task_id, {states.SUCCESS, states.FAILURE}, 20)["status"] == (
            states.SUCCESS
        )
    assert crash_support.runs(runs_dsn, worn) == []  # never started
    assert worker.process.poll() is None, worker.log
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0


def test_an_outcome_that_cannot_be_computed_ends_the_task(
    runs_dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """A job whose own backoff overflows: the done-callback records FAILURE with the reason
    instead of leaving the task STARTED under a live worker; the worker goes on."""
    task_id = client.queue_task("overflowing_backoff")
    start_worker(task_paths=[crash_support.CRASH_JOBS], lease=5.0)
    row = wait_status(runs_dsn, task_id, {states.FAILURE, states.RETRY, states.SUCCESS}, 20)
    assert row["status"] == states.FAILURE, row
    assert row["error"].startswith("its outcome could not be computed: OverflowError")
    after = client.queue_task("flaky", failures=0)
    assert wait_status(runs_dsn, after, {states.SUCCESS, states.FAILURE}, 20)["status"] == (
        states.SUCCESS
    )

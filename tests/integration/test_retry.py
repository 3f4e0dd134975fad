"""Retries, time limits and revoke, on a real database with an in-process worker."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pgqueue import RevokeResult, TaskBackend, TaskNotFound, states
from tests.support import crash as crash_support
from tests.support.crash import CRASH_JOBS, runs, task_row, wait_status, wait_until

runs_dsn = crash_support.runs_dsn
client_jobs = crash_support.client_jobs


@pytest.fixture
def worker(runs_dsn: str, start_worker: Any) -> Any:
    return start_worker(task_paths=[CRASH_JOBS], lease=5.0, backlog=4)


def test_failing_task_retries_then_succeeds(
    runs_dsn: str, client: TaskBackend, worker: Any
) -> None:
    """Two failures then success: attempts 3, the errors cleared, three recorded runs."""
    task_id = client.queue_task("flaky", failures=2)
    row = wait_status(runs_dsn, task_id, {states.SUCCESS, states.FAILURE}, timeout=20)
    assert (row["status"], row["attempts"], row["result"], row["error"]) == (
        states.SUCCESS,
        3,
        3,
        None,
    )
    assert [r["attempt"] for r in runs(runs_dsn, task_id)] == [1, 2, 3]


@pytest.mark.slow
def test_poison_exception_fails_after_the_cap(
    runs_dsn: str, client: TaskBackend, worker: Any
) -> None:
    """A task that always raises ends FAILURE after 1 + max_retries attempts, with its error."""
    task_id = client.queue_task("flaky", failures=99)
    row = wait_status(runs_dsn, task_id, {states.FAILURE}, timeout=20)
    assert row["attempts"] == 4
    assert row["error"].startswith("ValueError: attempt 4 fails")
    assert "gave up after 4 attempts" in row["error"]
    assert "Traceback" in row["traceback"]


def test_retry_only_on_chosen_exceptions(runs_dsn: str, client: TaskBackend, worker: Any) -> None:
    not_retried = client.queue_task("picky", error="ValueError")
    retried = client.queue_task("picky", error="ConnectionError")
    assert wait_status(runs_dsn, not_retried, {states.FAILURE}, timeout=20)["attempts"] == 1
    assert wait_status(runs_dsn, retried, {states.FAILURE}, timeout=20)["attempts"] == 4


def test_job_asks_for_a_retry(runs_dsn: str, client: TaskBackend, worker: Any) -> None:
    """Retry(countdown=0.2) waits at least 0.2 s on the database clock, then runs again; asked
    beyond max_retries, the task fails with the reason."""
    task_id = client.queue_task("asks_retry", times=1)
    row = wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=20)
    assert row["attempts"] == 2
    first, second = runs(runs_dsn, task_id)
    assert (second["at"] - first["at"]).total_seconds() >= 0.2
    too_many = client.queue_task("asks_retry", times=5)
    row = wait_status(runs_dsn, too_many, {states.FAILURE}, timeout=20)
    assert row["attempts"] == 2 and row["error"].startswith("Retry: not ready at attempt 2")


def test_retry_keeps_the_lock_id(runs_dsn: str, client: TaskBackend, worker: Any) -> None:
    """While a non-overlapping task waits in RETRY no duplicate can be queued."""
    worker.worker.stop()
    worker.join()
    task_id = client.queue_task("tracked", key="locked")
    crash_support.sql(runs_dsn, "UPDATE pgqueue.task SET status = 4 WHERE id = %s", (task_id,))
    assert client.queue_task("tracked", key="locked") is None


@pytest.mark.slow
def test_thread_job_time_limit_is_cooperative(
    runs_dsn: str, client: TaskBackend, worker: Any
) -> None:
    """A thread job checking consumer.check() stops at its 0.5 s limit; the attempt fails
    with TimeLimitExceeded and is retried once (max_retries=1), then FAILURE."""
    task_id = client.queue_task("cooperative", seconds=30)
    started = time.monotonic()
    row = wait_status(runs_dsn, task_id, {states.FAILURE}, timeout=20)
    assert time.monotonic() - started < 10
    assert row["attempts"] == 2
    assert row["error"].startswith("TimeLimitExceeded")
    quick = client.queue_task("cooperative", seconds=0.1)
    assert wait_status(runs_dsn, quick, {states.SUCCESS}, timeout=20)["result"] == "done"


@pytest.mark.slow
def test_async_job_is_cancelled_at_its_time_limit(
    runs_dsn: str, client: TaskBackend, worker: Any
) -> None:
    task_id = client.queue_task("async_slow", seconds=30)
    row = wait_status(runs_dsn, task_id, {states.FAILURE}, timeout=10)
    assert row["error"].startswith("TimeLimitExceeded")
    assert (row["time_ended"] - row["time_started"]).total_seconds() < 5


def test_revoke_queued_task(runs_dsn: str, client: TaskBackend) -> None:
    """QUEUED -> REVOKED at once, releasing the lock_id; finished tasks are left alone."""
    task_id = client.queue_task("tracked", key="r")
    assert client.revoke(task_id) is RevokeResult.REVOKED
    row = task_row(runs_dsn, task_id)
    assert (row["status"], row["error"]) == (states.REVOKED, "revoked")
    assert row["time_ended"] is not None
    assert client.queue_task("tracked", key="r") is not None
    assert client.revoke(task_id) is RevokeResult.ALREADY_DONE
    with pytest.raises(TaskNotFound):
        client.revoke("00000000-0000-0000-0000-000000000000")
    with pytest.raises(TaskNotFound):
        client.revoke("not-a-uuid")


def test_revoke_running_tasks(runs_dsn: str, client: TaskBackend, worker: Any) -> None:
    """A running async task is cancelled; a running thread task sees consumer.is_revoked()
    through consumer.check(); both end REVOKED promptly and release their lock_id."""
    async_id = client.queue_task("async_wait", key="a", seconds=60)
    thread_id = client.queue_task("stoppable", seconds=60)  # checks every 20 ms
    wait_status(runs_dsn, async_id, {states.STARTED}, timeout=10)
    wait_status(runs_dsn, thread_id, {states.STARTED}, timeout=10)
    assert client.revoke(async_id) and client.revoke(thread_id)
    for task_id in (async_id, thread_id):
        row = wait_status(runs_dsn, task_id, {states.REVOKED, states.SUCCESS}, timeout=10)
        assert row["status"] == states.REVOKED, row
    assert client.queue_task("async_wait", key="a", seconds=0) is not None


def test_revoke_missed_notification_is_caught_by_heartbeat(
    runs_dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """A revoke request written while no notification reaches the worker is still found by
    the heartbeat (every lease/4)."""
    start_worker(task_paths=[CRASH_JOBS], lease=1.0)
    task_id = client.queue_task("async_wait", key="m", seconds=60)
    wait_status(runs_dsn, task_id, {states.STARTED}, timeout=10)
    crash_support.sql(
        runs_dsn, "UPDATE pgqueue.task SET revoke_requested_at = now() WHERE id = %s", (task_id,)
    )
    wait_until(lambda: task_row(runs_dsn, task_id)["status"] == states.REVOKED, 10, "REVOKED")


def test_outcome_the_database_refuses_ends_failure(
    runs_dsn: str, client: TaskBackend, worker: Any
) -> None:
    """A result or error PostgreSQL cannot store (a NUL character) ends the task FAILURE with
    a clear error instead of killing the completer; tasks in the same batch are recorded."""
    ids = [client.queue_task("nul_result", raise_it=flag) for flag in (False, True)]
    ok = [client.queue_task("flaky", failures=0) for _ in range(5)]
    returned, raised = (
        wait_status(runs_dsn, task_id, {states.FAILURE, states.SUCCESS}, timeout=20)
        for task_id in ids
    )
    assert returned["status"] == raised["status"] == states.FAILURE
    assert "NUL" in returned["error"]  # refused when encoding the result, or when storing it
    assert raised["error"].startswith("the outcome FAILURE could not be recorded: ")
    for task_id in ok:
        assert wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=20)
    again = client.queue_task("flaky", failures=0)
    assert wait_status(runs_dsn, again, {states.SUCCESS}, timeout=20)  # the worker still works

"""Races and odd argument names at the client API, with real workers on a real database."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgqueue import TaskBackend, states
from pgqueue._errors import ConfigurationError, ConnectionFailed, TaskNotFound
from tests.support.fixtures import TEST_JOBS, run_cli, sql

JOBS = [TEST_JOBS, "tests.support.argument_jobs"]

#: queue_task's own keyword parameters: a job argument of these names is not the job's.
OWN_PARAMETERS = {
    "jobname": "j",
    "meta_params": {"m": 1},
    "expiry": 1,
    "run_at": "r",
    "countdown": 2,
    "queue": "q",
    "priority": 3,
    "connection": "c",
}


@pytest.fixture
def client_jobs() -> list[str]:
    return JOBS


def test_arguments_named_like_queue_tasks_parameters_reach_the_job(
    client: TaskBackend, start_worker: Any
) -> None:
    """Documented in ``queue_task``: such names are its parameters; ``queue_tasks`` and
    ``Call`` pass them to the job."""
    queued = client.queue_tasks("echo_kwargs", [OWN_PARAMETERS])
    worker = start_worker(task_paths=JOBS, burst=True)
    worker.join()
    task = client.wait_for_task(queued.ids[0] or "", timeout=10)
    assert task.status == states.SUCCESS
    assert task.result == OWN_PARAMETERS
    assert task.queue == "tasks" and task.priority == 0


@pytest.mark.parametrize("name", ["consumer", "self"])
def test_an_argument_no_job_can_receive_is_refused_at_enqueue(
    dsn: str, client: TaskBackend, name: str
) -> None:
    """It used to be queued, then fail every run with "got multiple values for argument"."""
    with pytest.raises((ConfigurationError, TypeError), match=name):  # self: Python's own
        client.queue_task("echo_kwargs", **{name: 1})
    with pytest.raises(ConfigurationError, match=name):
        client.queue_tasks("echo_kwargs", [{name: 1}])
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 0


def test_a_past_expiry_is_revoked_without_running(client: TaskBackend, start_worker: Any) -> None:
    """Documented in ``queue_task``: a negative expiry is accepted, the task never runs."""
    task_id = client.queue_task("echo_kwargs", expiry=-5, a=1)
    start_worker(task_paths=JOBS, burst=True).join()
    task = client.wait_for_task(task_id or "", timeout=10)
    assert task.status == states.REVOKED and task.time_started is None


@pytest.mark.slow
def test_waiting_for_a_task_deleted_meanwhile_raises_not_found(
    dsn: str, client: TaskBackend
) -> None:
    task_id = client.queue_task("echo_kwargs", a=1)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            client.wait_for_task(task_id or "", timeout=30)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.5)
    assert client.flush() == 1
    waiter.join(15)
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], TaskNotFound)


def test_flush_racing_two_workers_loses_or_doubles_nothing(
    dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """Each task is either deleted by flush before any claim, or runs exactly once to
    SUCCESS; nothing is left QUEUED or STARTED."""
    ids = client.queue_tasks("sleep", [{"seconds": 0.01}] * 400).queued
    workers = [start_worker(backlog=4, burst=True) for _ in range(2)]
    time.sleep(0.2)
    flushed = client.flush()
    for worker in workers:
        worker.join(60)
    rows = sql(dsn, "SELECT status, attempts, count(*) AS n FROM pgqueue.task GROUP BY 1, 2")
    left = {(row["status"], row["attempts"]): row["n"] for row in rows}
    assert left == {(states.SUCCESS, 1): len(ids) - flushed}
    assert 0 < flushed < len(ids)


def test_concurrent_bulk_enqueues_sharing_lock_ids_never_deadlock(
    dsn: str, client: TaskBackend
) -> None:
    """F11 at enqueue: two batches of the same non-overlapping tasks in opposite orders used
    to insert in input order, each waiting for the other's uncommitted lock_id: about one
    round in three ended in ``deadlock detected`` (reported as "cannot connect")."""
    errors: list[BaseException] = []
    results: list[Any] = []
    for round_ in range(8):
        keys = [f"r{round_}-{n}" for n in range(200)]

        def enqueue(order: list[str]) -> None:
            try:
                results.append(client.queue_tasks("exclusive", [{"key": k} for k in order]))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=enqueue, args=(order,)) for order in (keys, keys[::-1])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    # every key is live exactly once
    rows = sql(dsn, "SELECT kwargs->>'key' AS key, count(*) AS n FROM pgqueue.task GROUP BY 1")
    assert {row["n"] for row in rows} == {1} and len(rows) == 8 * 200
    assert sum(len(r.queued) for r in results) == 8 * 200


def test_bulk_ids_come_back_in_input_order_with_lock_ids(client: TaskBackend) -> None:
    """The batch is inserted in lock_id order; ``ids[i]`` is still the i-th task given, and
    the first of two duplicates in a batch is the one queued."""
    calls = [{"key": "b"}, {"key": "a"}, {"key": "b"}, {"key": "c", "seconds": 0}, {"key": "a"}]
    queued = client.queue_tasks("exclusive", calls)
    assert queued.skipped == [2, 4]
    for task_id, kwargs in zip(queued.ids, calls, strict=True):
        if task_id is not None:
            task = client.get_task(task_id)
            assert task is not None and task.kwargs == kwargs


def test_a_statement_timeout_is_not_reported_as_a_lost_connection(
    dsn: str, client: TaskBackend
) -> None:
    """Deadlocks and timeouts are ``OperationalError`` in psycopg; the client called them
    "cannot connect to PostgreSQL ... check that the server is running"."""
    impatient = make_conninfo(dsn, options="-c statement_timeout=300")
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE pgqueue.task IN ACCESS EXCLUSIVE MODE")
        with (
            TaskBackend(impatient, task_paths=JOBS) as backend,
            pytest.raises(psycopg.errors.QueryCanceled),
        ):
            try:
                backend.queue_task("echo_kwargs", a=1)
            except ConnectionFailed as exc:  # what it used to raise
                pytest.fail(f"reported as a connection failure: {exc}")
        done = run_cli(["pgqueue", "list"], impatient)
        holder.rollback()
    assert done.returncode == 1, done.stderr
    assert "statement timeout" in done.stderr and "migrate" not in done.stderr

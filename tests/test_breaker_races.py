"""Races and odd argument names at the client API, with real workers on a real database."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pgqueue import TaskBackend, states
from pgqueue.errors import ConfigurationError, TaskNotFound

from .conftest import TEST_JOBS, sql

JOBS = [TEST_JOBS, "tests.breaker_jobs"]

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
def client(dsn: str) -> Any:
    with TaskBackend(dsn, task_paths=JOBS) as backend:
        yield backend


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

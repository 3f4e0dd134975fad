"""Delayed tasks: ``queue_task(..., run_at=aware_datetime)`` or ``countdown=seconds``.

A delayed task is QUEUED at once but no worker claims it before ``run_at`` by the database
clock; a worker sleeping with a long poll_timeout still picks it up on time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import pgqueue
from pgqueue import ConfigurationError, states
from pgqueue._store import Store
from tests.support.fixtures import sql


def db_now(dsn: str) -> datetime:
    value: datetime = sql(dsn, "SELECT now() AS now")[0]["now"]
    return value


def claim(dsn: str) -> list[dict]:
    """Run the workers' claim statement once, as a worker named test-claimer."""
    op = Store("pgqueue").claim_tasks(
        queues=["tasks"], jobs=["add"], limit=10, worker="test-claimer"
    )
    return sql(dsn, op.sql, op.params)


def test_countdown_is_counted_on_the_database_clock(backend: pgqueue.TaskBackend, dsn: str) -> None:
    """F17: run_at = the database's now() + countdown, whatever the host clock says."""
    task_id = backend.queue_task("add", countdown=90, a=1, b=2)
    assert task_id
    row = sql(
        dsn,
        "SELECT status, run_at - time_queued AS delay FROM pgqueue.task WHERE id = %s",
        (task_id,),
    )[0]
    assert row["status"] == states.QUEUED
    assert row["delay"] == timedelta(seconds=90)


def test_delayed_task_is_not_claimable_before_run_at(
    backend: pgqueue.TaskBackend, dsn: str
) -> None:
    later = db_now(dsn) + timedelta(hours=1)
    delayed = backend.queue_task("add", run_at=later, a=1, b=1)
    by_countdown = backend.queue_task("add", countdown=timedelta(minutes=5), a=2, b=2)
    assert claim(dsn) == []
    # Once the database clock passes run_at, the same statement claims it.
    sql(
        dsn,
        "UPDATE pgqueue.task SET run_at = now() - interval '1 second' WHERE id = %s",
        (delayed,),
    )
    assert [str(row["id"]) for row in claim(dsn)] == [delayed]
    task = backend.get_task(by_countdown)
    assert task is not None and task.status == states.QUEUED


def test_run_at_in_the_past_is_claimable_at_once(backend: pgqueue.TaskBackend, dsn: str) -> None:
    task_id = backend.queue_task("add", run_at=db_now(dsn) - timedelta(days=1), a=1, b=1)
    assert [str(row["id"]) for row in claim(dsn)] == [task_id]


@pytest.mark.slow
def test_delayed_task_is_picked_up_on_time(
    backend: pgqueue.TaskBackend, dsn: str, start_worker
) -> None:
    """poll_timeout is 30 s, yet the task starts about when it is due: the worker sleeps until
    the next run_at, and never starts it early (both times on the database clock)."""
    start_worker(poll_timeout=30.0)
    run_at = db_now(dsn) + timedelta(seconds=1.5)
    task_id = backend.queue_task("add", run_at=run_at, a=20, b=22)
    assert task_id
    task = backend.wait_for_task(task_id, timeout=15)
    assert task.status == states.SUCCESS and task.result == 42
    assert task.time_started is not None
    assert task.time_started >= run_at
    assert task.time_started - run_at < timedelta(seconds=5)


def test_a_far_delayed_task_stays_queued_while_a_worker_runs(
    backend: pgqueue.TaskBackend, dsn: str, start_worker
) -> None:
    later = backend.queue_task("add", countdown=3600, a=1, b=1)
    now = backend.queue_task("add", a=1, b=2)
    start_worker()
    assert backend.wait_for_task(now, timeout=15).status == states.SUCCESS
    task = backend.get_task(later)
    assert task is not None and task.status == states.QUEUED and task.attempts == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"run_at": datetime(2030, 1, 1, 12, 0)}, "naive datetime"),
        ({"countdown": -5}, "countdown must be seconds >= 0"),
        ({"countdown": "soon"}, "countdown must be seconds"),
        ({"run_at": datetime.now(UTC), "countdown": 5}, "not both"),
    ],
)
@pytest.mark.slow
def test_bad_delays_are_refused_and_nothing_is_queued(
    backend: pgqueue.TaskBackend, dsn: str, options: dict, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        backend.queue_task("add", a=1, b=2, **options)
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 0

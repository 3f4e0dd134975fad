"""Enqueue from SQL: ``pgqueue.queue_task(...)`` behaves as ``TaskBackend.queue_task``."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import pgqueue
from pgqueue._db import connect
from tests.support.fixtures import sql

KWARGS_SAMPLES: list[dict[str, Any]] = [
    {"key": "plain"},
    {"key": "x", "seconds": 0.5},
    # Only the job's own parameters: enqueue refuses arguments the job does not take.
    {"seconds": 0.5, "key": {"nested": {"b": [1, 2, {"z": None}], "a": "é ü 🐘"}}},
    {"key": "quote ' and \\ backslash", "seconds": 10**15},
]


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", KWARGS_SAMPLES)
def test_sql_lock_id_is_the_python_lock_id(
    kwargs: dict[str, Any], backend: pgqueue.TaskBackend, dsn: str
) -> None:
    """The SQL function and the Python client compute one lock_id for one call."""
    task_id = backend.queue_task("exclusive", **kwargs)
    assert task_id is not None
    row = sql(
        dsn,
        "SELECT lock_id, pgqueue.task_lock_id('exclusive', kwargs) AS from_sql "
        "FROM pgqueue.task WHERE id = %s",
        (task_id,),
    )[0]
    assert row["lock_id"] == row["from_sql"]
    # The same call from SQL, keys in another order, is a duplicate of the live task.
    reordered = dict(reversed(list(kwargs.items())))
    again = sql(
        dsn,
        "SELECT pgqueue.queue_task('exclusive', %s::jsonb, can_overlap => false) AS id",
        (psycopg.types.json.Jsonb(reordered),),
    )
    assert again == [{"id": None}]


@pytest.mark.slow
def test_sql_enqueue_is_run_by_a_worker_woken_by_its_notification(
    backend: pgqueue.TaskBackend, dsn: str, start_worker: Any
) -> None:
    """With a 30 s poll, only the task_queued notification can get it run within seconds."""
    start_worker(poll_timeout=30.0)
    with connect(dsn) as listener:
        listener.execute("LISTEN tasks_task_queued")
        rows = sql(
            dsn,
            """SELECT pgqueue.queue_task('add', '{"a": 2, "b": 40}', priority => 3) AS id""",
        )
        task_id = str(rows[0]["id"])
        assert [n.payload for n in listener.notifies(timeout=5, stop_after=1)] == [task_id]
    task = backend.wait_for_task(task_id, timeout=10)
    assert task.status == pgqueue.states.SUCCESS and task.result == 42
    assert task.priority == 3 and task.queue == "tasks"


def test_sql_enqueue_conflict_keeps_the_transaction_usable(dsn: str) -> None:
    with connect(dsn, autocommit=False) as conn:
        first = conn.execute(
            """SELECT pgqueue.queue_task('exclusive', '{"key": "k"}', can_overlap => false)"""
            " AS id"
        ).fetchone()
        second = conn.execute(
            """SELECT pgqueue.queue_task('exclusive', '{"key": "k"}', can_overlap => false)"""
            " AS id"
        ).fetchone()
        assert first is not None and first["id"] is not None
        assert second == {"id": None}
        conn.execute("SELECT 1")  # still usable
        conn.commit()
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 1}]


def test_sql_enqueue_options_and_bad_input(dsn: str) -> None:
    rows = sql(
        dsn,
        """SELECT pgqueue.queue_task('add', '{"a": 1, "b": 1}', queue => 'mail',
                  run_at => now() + interval '1 hour', expiry => now() + interval '2 hours',
                  meta_params => '{"origin": "psql"}', max_retries => 2) AS id""",
    )
    task = sql(
        dsn,
        "SELECT queue, status, run_at > now() AS later, expiry > run_at AS expires_after, "
        "meta_params, max_retries, lock_id FROM pgqueue.task WHERE id = %s",
        (rows[0]["id"],),
    )[0]
    assert task == {
        "queue": "mail",
        "status": pgqueue.states.QUEUED,
        "later": True,
        "expires_after": True,
        "meta_params": {"origin": "psql"},
        "max_retries": 2,
        "lock_id": None,
    }
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="JSON object"):
        sql(dsn, "SELECT pgqueue.queue_task('add', '[1, 2]')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="name"):
        sql(dsn, "SELECT pgqueue.queue_task('', '{}')")

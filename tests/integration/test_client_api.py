"""The client API: queueing, reading, lock_id, expiry, bad input (the core issue)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

import pgqueue
from pgqueue import states
from pgqueue._errors import ConfigurationError, SerializationError, TaskNotAvailable
from tests.support.fixtures import sql


def test_queue_task_inserts_a_queued_row(backend: pgqueue.TaskBackend, dsn: str) -> None:
    task_id = backend.queue_task("add", meta_params={"origin": "test"}, a=1, b=2)
    assert task_id
    task = backend.get_task(task_id)
    assert task is not None
    assert (task.name, task.queue, task.status) == ("add", "tasks", states.QUEUED)
    assert task.kwargs == {"a": 1, "b": 2}
    assert task.meta_params == {"origin": "test"}
    assert task.lock_id is None and task.expiry is None and not task.done()
    assert task.status_string() == "QUEUED"
    assert task.time_queued is not None and task.time_queued.tzinfo is not None
    [row] = sql(dsn, "SELECT s.name FROM pgqueue.task t JOIN pgqueue.state s ON s.code = t.status")
    assert row["name"] == "QUEUED"


def test_get_tasks_and_unknown_ids(backend: pgqueue.TaskBackend) -> None:
    ids = [backend.queue_task("add", a=i, b=i) for i in range(3)]
    assert {t.id for t in backend.get_tasks(ids)} == set(ids)
    # A malformed id is a usage error everywhere (issue 17), no longer read as "absent".
    with pytest.raises(pgqueue.InvalidTaskId):
        backend.get_tasks([*ids, "not-a-uuid"])
    with pytest.raises(pgqueue.InvalidTaskId):
        backend.get_task("not-a-uuid")
    assert backend.get_task("00000000-0000-0000-0000-000000000000") is None


def test_unknown_job_inserts_nothing(backend: pgqueue.TaskBackend, dsn: str) -> None:
    with pytest.raises(TaskNotAvailable, match="'nope' is not registered"):
        backend.queue_task("nope", a=1)
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"a": object(), "b": 1}, {"a": {1, 2}, "b": 1}, {"a": math.nan, "b": 1}, {"a": b"x", "b": 2}],
)
@pytest.mark.slow
def test_non_json_kwargs_insert_nothing(
    backend: pgqueue.TaskBackend, dsn: str, kwargs: dict[str, object]
) -> None:
    with pytest.raises(SerializationError, match="argument 'a' of job 'add'"):
        backend.queue_task("add", **kwargs)
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 0


def test_expiry_forms_use_the_database_clock(backend: pgqueue.TaskBackend, dsn: str) -> None:
    in_seconds = backend.get_task(backend.queue_task("add", expiry=60, a=1, b=1) or "")
    in_delta = backend.get_task(
        backend.queue_task("add", expiry=timedelta(minutes=2), a=1, b=1) or ""
    )
    at = datetime(2030, 1, 1, 12, tzinfo=UTC)
    absolute = backend.get_task(backend.queue_task("add", expiry=at, a=1, b=1) or "")
    default = backend.get_task(backend.queue_task("with_timeout") or "")
    assert in_seconds and in_delta and absolute and default
    assert in_seconds.time_queued and in_delta.time_queued and default.time_queued
    assert in_seconds.expiry - in_seconds.time_queued == timedelta(seconds=60)  # type: ignore[operator]
    assert in_delta.expiry - in_delta.time_queued == timedelta(minutes=2)  # type: ignore[operator]
    assert absolute.expiry == at
    assert default.expiry - default.time_queued == timedelta(hours=1)  # type: ignore[operator]


def test_naive_expiry_is_refused(backend: pgqueue.TaskBackend, dsn: str) -> None:
    with pytest.raises(ConfigurationError, match="naive datetime"):
        backend.queue_task("add", expiry=datetime(2030, 1, 1), a=1, b=1)
    with pytest.raises(ConfigurationError, match="seconds"):
        backend.queue_task("add", expiry="soon", a=1, b=1)  # type: ignore[arg-type]
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 0


def test_lock_id_blocks_a_second_live_copy(backend: pgqueue.TaskBackend, dsn: str) -> None:
    first = backend.queue_task("exclusive", key="k", seconds=0)
    assert first is not None
    assert backend.queue_task("exclusive", seconds=0, key="k") is None  # same kwargs, any order
    other = backend.queue_task("exclusive", key="other", seconds=0)
    assert other is not None
    locks = {row["lock_id"] for row in sql(dsn, "SELECT lock_id FROM pgqueue.task")}
    assert len(locks) == 2 and None not in locks
    # The lock is held by every live state and released by every ready state.
    for live in (states.STARTED, states.RETRY):
        sql(dsn, "UPDATE pgqueue.task SET status = %s WHERE id = %s", (live, first))
        assert backend.queue_task("exclusive", key="k", seconds=0) is None
    sql(dsn, "UPDATE pgqueue.task SET status = %s WHERE id = %s", (states.SUCCESS, first))
    again = backend.queue_task("exclusive", key="k", seconds=0)
    assert again is not None and again != first


def test_can_overlap_callable_decides_per_call(backend: pgqueue.TaskBackend) -> None:
    assert backend.queue_task("per_key", exclusive=True, n=1)
    assert backend.queue_task("per_key", exclusive=True, n=1) is None
    assert backend.queue_task("per_key", exclusive=False, n=1)
    assert backend.queue_task("per_key", exclusive=False, n=1)
    [(_name, info)] = backend.job_list(["per_key"])
    assert info["can_overlap"] == "maybe"


def test_partial_unique_index_is_the_arbiter(dsn: str) -> None:
    """Even SQL that bypasses Python cannot create a second live copy."""
    insert = "INSERT INTO pgqueue.task (name, lock_id, status) VALUES ('exclusive', 'L', %s)"
    sql(dsn, insert, (states.QUEUED,))
    with pytest.raises(Exception, match="task_lock_id_live"):
        sql(dsn, insert, (states.RETRY,))
    sql(dsn, insert, (states.SUCCESS,))  # finished copies do not count


def test_flush_removes_queued_tasks_of_its_queue(backend: pgqueue.TaskBackend, dsn: str) -> None:
    backend.queue_task("add", a=1, b=1)
    backend.queue_task("add", a=2, b=2)
    backend.queue_task("add", queue="other", a=3, b=3)
    assert backend.flush() == 2
    assert [r["queue"] for r in sql(dsn, "SELECT queue FROM pgqueue.task")] == ["other"]


def test_job_list_describes_jobs(backend: pgqueue.TaskBackend) -> None:
    jobs = dict(backend.job_list())
    assert jobs["with_timeout"]["timeout"] == 3600.0
    assert jobs["exclusive"]["can_overlap"] is False
    assert jobs["add"]["doc"] == "Add two numbers."


def test_nice_task_message(backend: pgqueue.TaskBackend) -> None:
    task = backend.get_task(backend.queue_task("add", a=1, b=2) or "")
    assert task is not None
    message = pgqueue.nice_task_message(task)
    assert message.startswith(f"add ({task.id[:8]}) QUEUED at ")


def test_queue_names_are_capped_in_bytes_by_the_table(dsn: str) -> None:
    """NOTIFY channels ``<queue>_task_started`` must fit 63 bytes: the table caps queue names
    at 48 bytes, so a multi-byte name cannot slip through SQL-side enqueues either."""
    insert = "INSERT INTO pgqueue.task (name, queue) VALUES ('add', %s)"
    sql(dsn, insert, ("キ" * 16,))  # 48 bytes
    with pytest.raises(Exception, match="task_queue_check"):
        sql(dsn, insert, ("キ" * 17,))  # 17 characters, 51 bytes

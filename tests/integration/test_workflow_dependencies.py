"""Issue 14, dependencies: ``depends_on`` holds a task until every parent ended SUCCESS; a
failed or revoked parent revokes its waiting descendants (unless they opt in); bad parents are
refused with nothing queued; a rollback leaves nothing; pruning never strands a child."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue import Call, TaskBackend
from pgqueue._db import connect
from pgqueue._errors import ConfigurationError, DependencyError, InvalidTaskId
from tests.support.fixtures import TEST_JOBS, sql

JOBS = [TEST_JOBS, "tests.support.workflow_jobs"]


@pytest.fixture
def wf(dsn: str) -> Iterator[TaskBackend]:
    with TaskBackend(dsn, task_paths=JOBS) as client:
        yield client


def row(dsn: str, task_id: str) -> dict[str, Any]:
    return sql(
        dsn,
        "SELECT s.name AS state, t.* FROM pgqueue.task t JOIN pgqueue.state s "
        "ON s.code = t.status WHERE t.id = %s",
        (task_id,),
    )[0]


def task_count(dsn: str) -> int:
    return int(sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"])


def test_a_dependent_starts_only_after_its_last_parent_succeeded(
    wf: TaskBackend, dsn: str, start_worker: Any
) -> None:
    slow = wf.queue_task("sleep", seconds=0.6)
    fast = wf.queue_task("add", a=1, b=2)
    assert slow and fast
    child = wf.queue_task("collect", depends_on=[slow, fast], tag="c")
    assert child is not None
    assert row(dsn, child)["waiting_on"] == 2
    start_worker(backlog=4, task_paths=JOBS, poll_timeout=1.0)
    done = wf.wait_for_task(child, timeout=30)
    assert done.status_string() == "SUCCESS"
    # Results in depends_on order, with states.
    assert done.result == {"tag": "c", "parents": [[slow, "SUCCESS", 0.6], [fast, "SUCCESS", 3]]}
    # The database's own clock: the child started after both parents' SUCCESS committed.
    times = sql(
        dsn,
        "SELECT c.time_started AS started, max(p.time_ended) AS last_parent_ended "
        "FROM pgqueue.task c JOIN pgqueue.task_dependency d ON d.child = c.id "
        "JOIN pgqueue.task p ON p.id = d.parent WHERE c.id = %s GROUP BY c.id",
        (child,),
    )[0]
    assert times["started"] >= times["last_parent_ended"]
    assert row(dsn, child)["waiting_on"] == 0


def test_no_worker_claims_a_waiting_task(wf: TaskBackend, dsn: str, start_worker: Any) -> None:
    parent = wf.queue_task("add", a=1, b=1, countdown=3600)  # not due for an hour
    assert parent is not None
    child = wf.queue_task("add", a=2, b=2, depends_on=[parent])
    free = wf.queue_task("add", a=3, b=3)
    assert child and free
    start_worker(backlog=2, task_paths=JOBS, poll_timeout=0.2)
    assert wf.wait_for_task(free, timeout=20).status_string() == "SUCCESS"
    assert row(dsn, child)["state"] == "QUEUED"
    assert row(dsn, child)["time_started"] is None


def test_a_failed_parent_revokes_descendants_and_opted_in_children_run(
    wf: TaskBackend, dsn: str, start_worker: Any
) -> None:
    parent = wf.queue_task("fail", why="boom")
    assert parent is not None
    child = wf.queue_task("collect", depends_on=[parent])
    assert child is not None
    grandchild = wf.queue_task("add", a=1, b=1, depends_on=[child])
    anyway = wf.queue_task("collect_anyway", depends_on=[parent], tag="x")
    assert grandchild and anyway
    start_worker(backlog=2, task_paths=JOBS, poll_timeout=0.5)
    assert wf.wait_for_task(parent, timeout=20).status_string() == "FAILURE"
    ran = wf.wait_for_task(anyway, timeout=20)
    assert ran.status_string() == "SUCCESS"
    assert ran.result["parents"][0][:2] == [parent, "FAILURE"]
    revoked = row(dsn, child)
    assert revoked["state"] == "REVOKED" and revoked["time_started"] is None
    assert parent in revoked["error"] and "FAILURE" in revoked["error"]
    assert "ValueError" in revoked["error"]
    deeper = row(dsn, grandchild)
    assert deeper["state"] == "REVOKED" and deeper["time_started"] is None
    assert child in deeper["error"] and parent in deeper["error"]


def test_a_parent_that_already_failed_revokes_the_new_dependent(wf: TaskBackend, dsn: str) -> None:
    parent = wf.queue_task("add", a=1, b=1)
    assert parent is not None
    assert wf.revoke(parent, reason="not needed")
    child = wf.queue_task("add", a=1, b=1, depends_on=[parent])
    assert child is not None
    got = row(dsn, child)
    assert got["state"] == "REVOKED"
    assert f"parent {parent} (add) ended REVOKED: not needed" == got["error"]
    anyway = wf.queue_task("collect_anyway", depends_on=[parent])
    assert anyway is not None
    assert row(dsn, anyway)["state"] == "QUEUED" and row(dsn, anyway)["waiting_on"] == 0


def test_revoke_propagates_to_pending_dependents(wf: TaskBackend, dsn: str) -> None:
    parent = wf.queue_task("add", a=1, b=1)
    assert parent is not None
    ids = wf.chain(*[Call("add", {"a": n, "b": 0}) for n in range(3)])
    child = wf.queue_task("add", a=9, b=9, depends_on=[parent, ids[0]])
    assert wf.revoke(parent)
    assert row(dsn, child or "")["state"] == "REVOKED"
    assert wf.revoke(ids[0])
    assert [row(dsn, i)["state"] for i in ids] == ["REVOKED"] * 3


def test_unknown_parents_are_refused_and_nothing_is_queued(wf: TaskBackend, dsn: str) -> None:
    known = wf.queue_task("add", a=1, b=1)
    assert known is not None
    unknown = str(uuid.uuid4())
    before = task_count(dsn)
    with pytest.raises(DependencyError) as caught:
        wf.queue_task("add", a=1, b=2, depends_on=[known, unknown])
    assert unknown in str(caught.value) and "nothing was queued" in str(caught.value)
    assert caught.value.missing == [unknown]
    with pytest.raises(DependencyError):
        wf.queue_tasks("add", [{"a": 1, "b": 2}] * 3, depends_on=[unknown])
    with pytest.raises(InvalidTaskId):
        wf.queue_task("add", a=1, b=2, depends_on=["not-an-id"])
    with pytest.raises(ConfigurationError, match="list of task ids"):
        wf.queue_task("add", a=1, b=2, depends_on=known)  # one id, not a list
    assert task_count(dsn) == before
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task_dependency")[0]["n"] == 0


def test_a_parent_of_another_schema_is_unknown(dsn: str) -> None:
    from pgqueue._schema import migrate

    migrate(dsn, "other")
    with TaskBackend(dsn, task_paths=JOBS, schema="other") as other:
        foreign = other.queue_task("add", a=1, b=1)
        assert foreign is not None
        with (
            TaskBackend(dsn, task_paths=JOBS) as mine,
            pytest.raises(DependencyError, match="schema 'pgqueue'"),
        ):
            mine.queue_task("add", a=1, b=1, depends_on=[foreign])
    assert task_count(dsn) == 0


def test_a_rollback_leaves_no_part_of_a_dependent(wf: TaskBackend, dsn: str) -> None:
    parent = wf.queue_task("add", a=1, b=1)
    assert parent is not None
    with connect(dsn) as conn, conn.transaction(force_rollback=True):
        child = wf.queue_task("add", a=2, b=2, depends_on=[parent], connection=conn)
        assert child is not None
        assert conn.execute("SELECT count(*) FROM pgqueue.task_dependency").fetchone() == {
            "count": 1
        }
    assert task_count(dsn) == 1
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task_dependency")[0]["n"] == 0


def test_pruning_finished_parents_neither_strands_nor_releases_a_child(
    wf: TaskBackend, dsn: str
) -> None:
    done = wf.queue_task("add", a=1, b=1)
    pending = wf.queue_task("add", a=2, b=2)
    assert done and pending
    sql(dsn, "UPDATE pgqueue.task SET status = 1, time_ended = now() WHERE id = %s", (done,))
    child = wf.queue_task("add", a=3, b=3, depends_on=[done, pending])
    assert child is not None
    assert row(dsn, child)["waiting_on"] == 1
    sql(dsn, "DELETE FROM pgqueue.task WHERE status IN (1, 2, 3)")  # what retention deletes
    assert row(dsn, child)["waiting_on"] == 1  # still waits for the unfinished parent
    assert [p["id"] for p in wf.parents(child)] == [pending]
    sql(dsn, "UPDATE pgqueue.task SET status = 1, time_ended = now() WHERE id = %s", (pending,))
    assert row(dsn, child)["waiting_on"] == 0  # released by the last parent only


def test_sql_function_queue_task_takes_depends_on(wf: TaskBackend, dsn: str) -> None:
    parent = wf.queue_task("add", a=1, b=1)
    child = sql(
        dsn,
        "SELECT pgqueue.queue_task('add', '{\"a\": 1, \"b\": 1}', depends_on => %s::uuid[]) AS id",
        ([parent],),
    )[0]["id"]
    assert row(dsn, str(child))["waiting_on"] == 1
    assert [p["id"] for p in wf.parents(str(child))] == [parent]
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="no task of this schema"):
        sql(
            dsn,
            "SELECT pgqueue.queue_task('add', '{}', depends_on => %s::uuid[])",
            ([str(uuid.uuid4())],),
        )
    assert task_count(dsn) == 2


def test_async_twins_take_depends_on(wf: TaskBackend, dsn: str) -> None:
    import asyncio

    async def main() -> tuple[str | None, list[str]]:
        parent = await wf.aqueue_task("add", a=1, b=1)
        assert parent is not None
        child = await wf.aqueue_task("add", a=1, b=1, depends_on=[parent])
        steps = await wf.achain(Call("add", {"a": 1, "b": 1}), Call("add", {"a": 2, "b": 1}))
        await wf.aclose()
        return child, steps

    child, steps = asyncio.run(main())
    assert child is not None and row(dsn, child)["waiting_on"] == 1
    assert row(dsn, steps[1])["waiting_on"] == 1


def test_flushing_a_parent_revokes_its_dependents(wf: TaskBackend, dsn: str) -> None:
    parent = wf.queue_task("add", a=1, b=1, queue="elsewhere")
    assert parent is not None
    child = wf.queue_task("add", a=2, b=2, depends_on=[parent])
    grandchild = wf.queue_task("add", a=3, b=3, depends_on=[child or ""])
    assert child and grandchild
    with TaskBackend(dsn, task_paths=JOBS, name="elsewhere") as other:
        assert other.flush() == 1
    got = row(dsn, child)
    assert got["state"] == "REVOKED" and f"parent {parent} (add) was flushed" in got["error"]
    assert row(dsn, grandchild)["state"] == "REVOKED"


def test_a_cycle_cannot_be_expressed(wf: TaskBackend, dsn: str) -> None:
    """A task depends only on tasks that exist (so not on itself nor on a later one) or on
    earlier tasks of its own batch: a link to itself or a later task is refused."""
    from pgqueue._enqueue import Link, batch_params

    add = Call("add", {"a": 1, "b": 1})
    for link in (Link(after=(0,)), Link(after=(1,))):
        with pytest.raises(ConfigurationError, match="cycle"):
            batch_params(wf.registry, "tasks", [(add, add.kwargs, link), (add, add.kwargs, None)])
    with pytest.raises(DependencyError):  # an id nobody has yet, as a task's own would be
        wf.queue_task("add", a=1, b=1, depends_on=[str(uuid.uuid4())])
    assert task_count(dsn) == 0

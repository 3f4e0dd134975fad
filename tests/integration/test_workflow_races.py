"""Issue 14, an enqueue with ``depends_on`` and its parents' finish, in both orders on two
connections: the finish never waits for the enqueuing transaction (only, at most, for its
commit), and the child is released or revoked exactly once whichever commits first; and one
finish statement updates a callback once for all the members it ends (revision
pgqueue_0011_callback_batch)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgqueue import Call, TaskBackend
from tests.support.fixtures import TEST_JOBS, sql

JOBS = [TEST_JOBS, "tests.support.workflow_jobs"]
#: Seconds a parent's finish may take while an enqueue that depends on it is open.
FINISH_BOUND = 3.0


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


def end_task(conn: psycopg.Connection[Any], task_id: str, status: int, error: str | None) -> None:
    """What a worker's finish does to the row (the triggers see the same UPDATE of status),
    bounded: a finish held up by a lock fails the test instead of hanging it."""
    conn.execute(f"SET statement_timeout = '{int(FINISH_BOUND * 1000)}ms'")
    conn.execute(
        "UPDATE pgqueue.task SET status = %s, error = %s, time_ended = now() WHERE id = %s",
        (status, error, task_id),
    )


def test_a_parent_finishes_while_an_enqueue_depending_on_it_is_open(
    wf: TaskBackend, dsn: str
) -> None:
    """Enqueue first (left open), then the parents end and commit: no wait; at the enqueue's
    commit the child counts only the parent still pending, then runs once that one ends."""
    done, pending = wf.queue_task("add", a=1, b=1), wf.queue_task("add", a=2, b=2)
    assert done and pending
    with (
        psycopg.connect(dsn, row_factory=dict_row) as enqueuer,
        psycopg.connect(dsn, autocommit=True) as finisher,
    ):
        child = wf.queue_task("add", a=3, b=3, depends_on=[done, pending], connection=enqueuer)
        assert child is not None
        started = time.monotonic()
        end_task(finisher, done, 1, None)  # autocommit: committed at once
        assert time.monotonic() - started < FINISH_BOUND
        assert row(dsn, done)["state"] == "SUCCESS"
        enqueuer.commit()
    got = row(dsn, child)
    assert (got["state"], got["waiting_on"]) == ("QUEUED", 1)
    with psycopg.connect(dsn, autocommit=True) as finisher:
        end_task(finisher, pending, 1, None)
    assert row(dsn, child)["waiting_on"] == 0


def test_a_parent_that_fails_while_the_enqueue_is_open_revokes_the_child_at_commit(
    wf: TaskBackend, dsn: str
) -> None:
    parent = wf.queue_task("add", a=1, b=1)
    assert parent is not None
    with (
        psycopg.connect(dsn, row_factory=dict_row) as enqueuer,
        psycopg.connect(dsn, autocommit=True) as finisher,
    ):
        child = wf.queue_task("add", a=3, b=3, depends_on=[parent], connection=enqueuer)
        grandchild = wf.queue_task("add", a=4, b=4, depends_on=[child], connection=enqueuer)
        anyway = wf.queue_task("collect_anyway", depends_on=[parent], connection=enqueuer)
        assert child and grandchild and anyway
        end_task(finisher, parent, 2, "boom")
        enqueuer.commit()
    got = row(dsn, child)
    assert got["state"] == "REVOKED"
    assert got["error"] == f"parent {parent} (add) ended FAILURE: boom"
    assert row(dsn, grandchild)["state"] == "REVOKED"
    assert parent in row(dsn, grandchild)["error"]
    got = row(dsn, anyway)
    assert (got["state"], got["waiting_on"]) == ("QUEUED", 0)


def test_an_enqueue_after_an_open_finish_waits_for_it_and_counts_it_once(
    wf: TaskBackend, dsn: str
) -> None:
    """The other order: a parent's finish is open (not committed) when a child is queued on
    it; the child's commit waits for the finish, then counts it ended: exactly once."""
    ending, pending = wf.queue_task("add", a=1, b=1), wf.queue_task("add", a=2, b=2)
    assert ending and pending
    committed = threading.Event()
    errors: list[BaseException] = []
    with (
        psycopg.connect(dsn) as finisher,
        psycopg.connect(dsn, row_factory=dict_row) as enqueuer,
    ):
        end_task(finisher, ending, 1, None)  # not committed yet
        child = wf.queue_task("add", a=3, b=3, depends_on=[ending, pending], connection=enqueuer)
        assert child is not None

        def commit() -> None:
            try:
                enqueuer.commit()
                committed.set()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=commit)
        thread.start()
        try:
            # The enqueue's commit waits for the finish (the parent's row is locked by it).
            assert not committed.wait(0.5)
            finisher.commit()
            assert committed.wait(FINISH_BOUND), errors
        finally:
            finisher.rollback()
            thread.join(FINISH_BOUND * 2)
    assert not errors
    got = row(dsn, child)
    assert (got["state"], got["waiting_on"]) == ("QUEUED", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        end_task(conn, pending, 1, None)
    assert row(dsn, child)["waiting_on"] == 0


def test_a_worker_finishes_a_parent_while_the_enqueue_is_open(
    wf: TaskBackend, dsn: str, start_worker: Any
) -> None:
    """Through a real worker: the parent ends SUCCESS while the enqueue's transaction is
    still open, and the child runs after that transaction commits."""
    parent = wf.queue_task("add", a=1, b=1)
    assert parent is not None
    with psycopg.connect(dsn, row_factory=dict_row) as enqueuer:
        child = wf.queue_task("collect", depends_on=[parent], tag="late", connection=enqueuer)
        assert child is not None
        start_worker(backlog=2, task_paths=JOBS, poll_timeout=0.2)
        assert wf.wait_for_task(parent, timeout=10).status_string() == "SUCCESS"
        enqueuer.commit()
    done = wf.wait_for_task(child, timeout=20)
    assert done.status_string() == "SUCCESS"
    assert done.result == {"tag": "late", "parents": [[parent, "SUCCESS", 2]]}


def test_one_finish_statement_updates_a_callback_once_for_all_its_members(
    wf: TaskBackend, dsn: str
) -> None:
    """Fifty members of a group ending in one statement update their callback row once (not
    once per member), and release it exactly once the last member has ended."""
    queued = wf.group([Call("add", {"a": n, "b": 0}) for n in range(51)], then=Call("tally"))
    callback, members = queued.then, queued.queued
    assert callback is not None and len(members) == 51
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        conn.execute(
            "UPDATE pgqueue.task SET status = 1, time_ended = now() WHERE id = ANY(%s::uuid[])",
            (members[:50],),
        )
        updated = conn.execute(
            "SELECT pg_stat_get_xact_tuples_updated('pgqueue.task'::regclass) AS n"
        ).fetchone()
        assert updated is not None and updated["n"] == 50 + 1
        conn.commit()
    got = row(dsn, callback)
    assert (got["state"], got["waiting_on"]) == ("QUEUED", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        end_task(conn, members[50], 1, None)
    assert row(dsn, callback)["waiting_on"] == 0

"""Transactional enqueue on every kind of application connection (F18).

The task exists if and only if the caller's transaction commits: before the commit no other
session sees it (so no worker can claim it) and no ``task_queued`` notification is delivered;
after a rollback there is nothing. A lock_id conflict inside the caller's transaction returns
None and leaves that transaction usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import psycopg
import pytest

import pgqueue
from pgqueue._db import connect
from pgqueue._errors import ConfigurationError
from tests.support.callers import KINDS, Caller, run_async
from tests.support.fixtures import sql


@pytest.fixture
def orders(dsn: str) -> str:
    sql(dsn, "CREATE TABLE orders (id serial PRIMARY KEY, note text NOT NULL)")
    return dsn


@pytest.fixture
def listener(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection LISTENing on tasks_task_queued."""
    with connect(dsn) as conn:
        conn.execute("LISTEN tasks_task_queued")
        yield conn


def notified(conn: psycopg.Connection[Any], wait: float = 0.3) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=wait, stop_after=10)]


def count_tasks(dsn: str) -> int:
    return int(sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_f18_rollback_leaves_no_task_commit_publishes_it(
    kind: str, orders: str, backend: pgqueue.TaskBackend, listener: psycopg.Connection[Any]
) -> None:
    """F18: rolled back, no task and no notification; committed, both, and not before."""

    async def scenario() -> None:
        caller = await Caller(kind, orders, backend).open()
        try:
            await caller.execute("INSERT INTO orders (note) VALUES ('rolled back')")
            lost = await caller.queue_task("add", a=1, b=2)
            assert lost is not None
            assert await caller.get_task(lost) is not None  # visible to its own transaction
            await caller.rollback()
            assert backend.get_task(lost) is None
            assert count_tasks(orders) == 0
            assert notified(listener) == []

            await caller.execute("INSERT INTO orders (note) VALUES ('kept')")
            kept = await caller.queue_task("add", a=3, b=4)
            assert kept is not None
            assert count_tasks(orders) == 0  # other sessions (workers) cannot see it yet
            assert notified(listener) == []  # ... nor hear of it
            await caller.commit()
            assert notified(listener, wait=5) == [kept]
            task = backend.get_task(kept)
            assert task is not None and task.status == pgqueue.states.QUEUED
            assert sql(orders, "SELECT note FROM orders") == [{"note": "kept"}]
        finally:
            await caller.close()

    run_async(scenario())


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_lock_conflict_inside_caller_transaction_does_not_poison_it(
    kind: str, orders: str, backend: pgqueue.TaskBackend
) -> None:
    """A duplicate of a live non-overlapping task returns None; the transaction goes on."""
    held = backend.queue_task("exclusive", key="held")
    assert held is not None

    async def scenario() -> None:
        caller = await Caller(kind, orders, backend).open()
        try:
            assert await caller.queue_task("exclusive", key="held") is None
            first = await caller.queue_task("exclusive", key="new")
            assert first is not None
            assert await caller.queue_task("exclusive", key="new") is None  # same transaction
            result = await caller.queue_tasks("exclusive", [{"key": "held"}, {"key": "bulk"}])
            assert result.skipped == [0] and result.ids[1] is not None
            await caller.execute("INSERT INTO orders (note) VALUES ('after the conflicts')")
            await caller.commit()
        finally:
            await caller.close()
        keys = sql(orders, "SELECT kwargs->>'key' AS key FROM pgqueue.task ORDER BY 1")
        assert [row["key"] for row in keys] == ["bulk", "held", "new"]
        assert sql(orders, "SELECT note FROM orders") == [{"note": "after the conflicts"}]

    run_async(scenario())


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_bulk_enqueue_follows_the_caller_transaction(
    kind: str, orders: str, backend: pgqueue.TaskBackend
) -> None:
    async def scenario() -> None:
        caller = await Caller(kind, orders, backend).open()
        try:
            batch = [{"a": n, "b": n} for n in range(50)]
            assert len((await caller.queue_tasks("add", batch)).queued) == 50
            await caller.rollback()
            assert count_tasks(orders) == 0
            assert len((await caller.queue_tasks("add", batch)).queued) == 50
            await caller.commit()
            assert count_tasks(orders) == 50
        finally:
            await caller.close()

    run_async(scenario())


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_f18_worker_claims_only_after_commit(
    kind: str, orders: str, backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    """F18: the commit comes 2 s after the enqueue; the worker runs the task after it only."""
    start_worker(poll_timeout=0.2)

    async def scenario() -> tuple[str, Any]:
        caller = await Caller(kind, orders, backend).open()
        try:
            task_id = await caller.queue_task("add", a=20, b=22)
            assert task_id is not None
            await asyncio.sleep(2)
            assert backend.get_task(task_id) is None  # not claimable: not even visible
            before_commit = sql(orders, "SELECT clock_timestamp() AS t")[0]["t"]
            await caller.commit()
            return task_id, before_commit
        finally:
            await caller.close()

    task_id, before_commit = run_async(scenario())
    task = backend.wait_for_task(task_id, timeout=20)
    assert task.status == pgqueue.states.SUCCESS and task.result == 42
    assert task.time_started is not None and task.time_started >= before_commit


def test_wrong_connection_kinds_are_refused_clearly(backend: pgqueue.TaskBackend, dsn: str) -> None:
    with pytest.raises(ConfigurationError, match="psycopg Connection or a SQLAlchemy Session"):
        backend.queue_task("add", connection="not a connection", a=1, b=2)

    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            with pytest.raises(ConfigurationError, match="aqueue_task"):
                backend.queue_task("add", connection=conn, a=1, b=2)
        with (
            psycopg.connect(dsn) as sync_conn,
            pytest.raises(ConfigurationError, match="without the a prefix"),
        ):
            await backend.aqueue_task("add", connection=sync_conn, a=1, b=2)

    run_async(scenario())
    assert count_tasks(dsn) == 0


@pytest.mark.slow
def test_concurrent_duplicate_waits_for_the_first_transaction(
    dsn: str, backend: pgqueue.TaskBackend
) -> None:
    """Two transactions queue the same non-overlapping call. The second waits on the unique
    index until the first ends: after a rollback it gets (and reports) its own task, after a
    commit it gets None. It never reports a task that does not exist."""
    for first_commits in (False, True):
        sql(dsn, "DELETE FROM pgqueue.task")
        with connect(dsn, autocommit=False) as first, connect(dsn, autocommit=False) as second:
            first_id = backend.queue_task("exclusive", key="same", connection=first)
            assert first_id is not None
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(
                    backend.queue_task, "exclusive", key="same", connection=second
                )
                with pytest.raises(FutureTimeout):
                    pending.result(timeout=0.5)  # blocked by the first transaction
                if first_commits:
                    first.commit()
                else:
                    first.rollback()
                second_id = pending.result(timeout=10)
            second.commit()
        live = [row["id"] for row in sql(dsn, "SELECT id::text AS id FROM pgqueue.task")]
        if first_commits:
            assert second_id is None and live == [first_id]
        else:
            assert second_id is not None and live == [second_id]

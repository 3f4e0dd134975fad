"""Enqueues notify only when someone needs it (revision pgqueue_0017_fewer_notifications,
F32): the first enqueue of a burst notifies, later ones of the same queue while it is open do
not, unless a worker of the queue waits or is settling; a worker about to sleep never misses a
task whose enqueue did not notify. One claim of a queue at a time sends ``task_started``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.sql import SQL, Identifier

import pgqueue
from pgqueue import states
from pgqueue._channels import TASK_QUEUED, TASK_STARTED, channel
from pgqueue._db import connect
from pgqueue._store import Store
from tests.support.fixtures import sql

QUEUE = "wake_q"
STORE = Store("pgqueue")

INSERT = """
INSERT INTO pgqueue.task (name, queue, kwargs, meta_params, run_at, max_retries)
VALUES ('add', %s, '{"a": 1, "b": 2}', '{}', now(), 0) RETURNING id::text AS id
"""


@contextmanager
def open_enqueue(dsn: str, queue: str = QUEUE) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A transaction that queued one task on ``queue`` and is left open; rolled back at the
    end unless the test committed it."""
    with connect(dsn, autocommit=False) as conn:
        row = conn.execute(INSERT, [queue]).fetchone()
        assert row is not None
        yield conn, row["id"]
        conn.rollback()


def enqueue(dsn: str, queue: str = QUEUE) -> str:
    """Queue one task on ``queue`` in a transaction of its own; return its id."""
    return str(sql(dsn, INSERT, [queue])[0]["id"])


@contextmanager
def listening(dsn: str, event: str = TASK_QUEUED) -> Iterator[Callable[[float], list[str]]]:
    """LISTEN on the queue's ``event``; yields ``heard(timeout)``: the payloads that arrived
    within ``timeout`` seconds (the first one only, when one arrives)."""
    with connect(dsn, autocommit=True) as conn:
        conn.execute(SQL("LISTEN {}").format(Identifier(channel(QUEUE, event))))

        def heard(timeout: float) -> list[str]:
            return [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]

        yield heard


def settle(dsn: str) -> bool:
    """Whether a worker of the queue could settle now (its own transaction, ended at once)."""
    with connect(dsn, autocommit=False) as conn:
        return STORE.settle_enqueues(queues=[QUEUE]).run(conn)


def test_a_lone_enqueue_notifies(dsn: str) -> None:
    with listening(dsn) as heard:
        task_id = enqueue(dsn)
        assert heard(5) == [task_id]


def test_an_enqueue_behind_an_open_one_does_not_notify_but_holds_the_enqueue_lock(
    dsn: str,
) -> None:
    with listening(dsn) as heard, open_enqueue(dsn) as (first, first_id):
        assert settle(dsn)  # the open enqueue will notify: nothing to settle
        with open_enqueue(dsn) as (second, second_id):
            assert not settle(dsn)  # an enqueue that did not notify is open
            second.commit()
        assert heard(0.5) == []
        assert settle(dsn)
        first.commit()
        assert heard(5) == [first_id]
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE id = %s", [second_id])[0]["n"]


def test_every_enqueue_notifies_while_a_worker_of_the_queue_waits(dsn: str) -> None:
    with connect(dsn) as conn:
        STORE.wait_for_tasks(queues=[QUEUE], worker="w1", lease=60).run(conn)
    with listening(dsn) as heard, open_enqueue(dsn) as (first, _):
        second_id = enqueue(dsn)
        assert heard(5) == [second_id]
        other = enqueue(dsn, "other_q")  # a waiter of another queue does not count
        sql(dsn, "UPDATE pgqueue.queue_waiter SET expires_at = now() - interval '1 second'")
        enqueue(dsn)  # its waiter row expired: no notification
        assert heard(0.5) == []
        first.rollback()
    assert other


def test_an_enqueue_notifies_while_a_worker_settles(dsn: str) -> None:
    with listening(dsn) as heard, open_enqueue(dsn), connect(dsn, autocommit=False) as worker:
        assert STORE.settle_enqueues(queues=[QUEUE]).run(worker)  # held to its commit
        task_id = enqueue(dsn)  # the shared enqueue lock is taken: it notifies instead
        assert heard(5) == [task_id]
        worker.commit()


def test_waiter_rows_are_renewed_and_dead_ones_forgotten(dsn: str) -> None:
    with connect(dsn) as conn:
        STORE.wait_for_tasks(queues=[QUEUE, QUEUE], worker="dead", lease=60).run(conn)
        STORE.wait_for_tasks(queues=[QUEUE], worker="live", lease=60).run(conn)
    sql(dsn, "UPDATE pgqueue.queue_waiter SET expires_at = now() - interval '2 minutes'")
    with connect(dsn) as conn:
        STORE.wait_for_tasks(queues=[QUEUE], worker="live", lease=30).run(conn)
    rows = sql(
        dsn,
        "SELECT worker, round(extract(epoch FROM expires_at - now())) AS left"
        " FROM pgqueue.queue_waiter",
    )
    assert [(r["worker"], r["left"]) for r in rows] == [("live", 30)]
    with connect(dsn) as conn:
        STORE.stop_waiting(worker="live").run(conn)
    assert sql(dsn, "SELECT * FROM pgqueue.queue_waiter") == []


def waiters(dsn: str) -> list[str]:
    return [r["worker"] for r in sql(dsn, "SELECT worker FROM pgqueue.queue_waiter")]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_an_idle_worker_claims_a_task_whose_enqueue_did_not_notify(
    dsn: str, backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    # The race the enqueue lock closes: an enqueue that saw no waiter (so skipped its
    # notification, another enqueue of the queue being open) commits after the claim of a
    # worker about to sleep. Without the lock the worker would sleep for poll_timeout (60 s).
    with open_enqueue(dsn) as (first, first_id), open_enqueue(dsn) as (second, second_id):
        worker = start_worker(queues=[QUEUE], poll_timeout=60.0)
        wait_until(lambda: bool(waiters(dsn)))  # it waits, and cannot settle
        time.sleep(0.3)
        second.commit()
        assert backend.wait_for_task(second_id, timeout=10).status == states.SUCCESS
        first.commit()  # the notifier: wakes the worker
        assert backend.wait_for_task(first_id, timeout=10).status == states.SUCCESS
        worker.stop()
    assert waiters(dsn) == []  # a stopped worker waits no more


@pytest.mark.slow
def test_a_busy_worker_stops_waiting_and_waits_again_once_idle(
    dsn: str, backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    worker = start_worker(queues=[QUEUE], backlog=2)
    wait_until(lambda: bool(waiters(dsn)))
    ids = backend.queue_tasks("sleep", [{"seconds": 0.1}] * 40, queue=QUEUE).queued
    assert len(ids) == 40
    wait_until(lambda: not waiters(dsn))  # claims fill its slots: it waits no more
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE status = 6")[0]["n"] > 0
    for task_id in ids:
        assert backend.wait_for_task(task_id, timeout=30).status == states.SUCCESS
    wait_until(lambda: bool(waiters(dsn)))  # idle again
    task_id = enqueue(dsn)  # and woken at once, well before poll_timeout (30 s)
    assert backend.wait_for_task(task_id, timeout=5).status == states.SUCCESS
    worker.stop()


START = "UPDATE pgqueue.task SET status = 5, time_started = now() WHERE id = %s"


def test_one_claim_of_a_queue_at_a_time_sends_task_started(dsn: str) -> None:
    first_id, second_id, third_id = enqueue(dsn), enqueue(dsn), enqueue(dsn)
    with listening(dsn, TASK_STARTED) as heard:
        with connect(dsn, autocommit=False) as first, connect(dsn, autocommit=False) as second:
            first.execute(START, [first_id])  # holds the queue's started lock to its commit
            second.execute(START, [second_id])
            second.commit()
            assert heard(0.5) == []  # claims of the fleet do not commit one by one
            first.commit()
            assert heard(5) == [first_id]
        sql(dsn, START, [third_id])  # a lone claim notifies
        assert heard(5) == [third_id]


def test_an_enqueue_under_repeatable_read_always_notifies(dsn: str) -> None:
    # Its snapshot may predate a worker's waiter row: it cannot trust that it saw none.
    with listening(dsn) as heard, open_enqueue(dsn):
        with connect(dsn, autocommit=False) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            task_id = conn.execute(INSERT, [QUEUE]).fetchone()["id"]
            conn.commit()
        assert heard(5) == [task_id]


def test_a_statement_of_many_queues_holds_a_bounded_number_of_locks(dsn: str) -> None:
    many = """
    INSERT INTO pgqueue.task (name, queue, kwargs, meta_params, run_at, max_retries)
    SELECT 'add', 'q' || n, '{"a": 1, "b": 2}', '{}', now(), 0 FROM generate_series(1, 500) n
    """
    with connect(dsn, autocommit=False) as conn:
        conn.execute(many)
        held = conn.execute(
            "SELECT count(*) AS n FROM pg_locks"
            " WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchone()
        conn.commit()
    assert held is not None and held["n"] <= 64  # two per queue for the first 32 at most


@contextmanager
def role(dsn: str, *grants: str) -> Iterator[str]:
    """A login role with USAGE on the schema and ``grants`` (``... TO {role}``), dropped
    afterwards; yields its DSN."""
    name = f"pgqueue_role_{uuid.uuid4().hex[:8]}"
    sql(dsn, f"CREATE ROLE {name} LOGIN")
    try:
        sql(dsn, f"GRANT USAGE ON SCHEMA pgqueue TO {name}")
        for grant in grants:
            sql(dsn, grant.format(role=name))
        yield make_conninfo(dsn, user=name)
    finally:
        sql(dsn, f"DROP OWNED BY {name}")
        sql(dsn, f"DROP ROLE {name}")


def test_a_role_granted_only_insert_on_the_task_table_enqueues(dsn: str) -> None:
    # The trigger reads queue_waiter through a SECURITY DEFINER function: no grant on it.
    insert = INSERT.replace(" RETURNING id::text AS id", "")
    with role(dsn, "GRANT INSERT ON pgqueue.task TO {role}") as producer, listening(dsn) as heard:
        with open_enqueue(dsn), connect(producer) as conn:
            conn.execute(insert, [QUEUE])
        assert heard(0.5) == []  # behind an open enqueue: skipped, as for any role
        with connect(producer) as conn:
            conn.execute(insert, [QUEUE])
        assert len(heard(5)) == 1


def test_a_worker_whose_role_may_not_wait_says_so_and_still_works(
    dsn: str, backend: pgqueue.TaskBackend, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with role(
        dsn,
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgqueue TO {role}",
        "REVOKE EXECUTE ON FUNCTION pgqueue.wait_for_tasks(text[], text, double precision),"
        " pgqueue.stop_waiting(text) FROM {role}",
    ) as worker_dsn:
        worker = start_worker(dsn=worker_dsn, queues=[QUEUE])
        task_id = enqueue(dsn)
        assert backend.wait_for_task(task_id, timeout=10).status == states.SUCCESS
        worker.stop()
        assert waiters(dsn) == []
    assert "GRANT EXECUTE" in caplog.text

"""Round robin between the limit keys of a queue, limits on tasks queued by SQL, and the
retention of the rate limits' start log (issue 13, revision pgqueue_0010_flow_turns)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgqueue
from pgqueue._db import connect
from tests.support.crash import wait_until
from tests.support.fixtures import sql

FLOW_JOBS = "tests.support.flow_jobs"
JOBS = ["one_per_tenant", "rated_per_tenant"]


@pytest.fixture
def client(dsn: str) -> Iterator[pgqueue.TaskBackend]:
    with pgqueue.TaskBackend(dsn, task_paths=[FLOW_JOBS]) as backend:
        yield backend


def _claim(dsn: str, client: pgqueue.TaskBackend, limit: int) -> list[str]:
    """Claim up to ``limit`` tasks of queue turns with the flow-controlled claim, committed;
    return their limit keys in the order of their ids' start."""
    op = client.store.claim_tasks(queues=["turns"], jobs=JOBS, limit=limit, worker="test")
    with connect(dsn, autocommit=False) as conn:
        ids = [row["id"] for row in conn.execute(op.sql, op.params).fetchall()]
        conn.commit()
    rows = sql(
        dsn, "SELECT id::text, limit_key FROM pgqueue.task WHERE id = ANY(%s::uuid[])", [ids]
    )
    return sorted(row["limit_key"] for row in rows)


def _finish_started(dsn: str) -> None:
    sql(dsn, "UPDATE pgqueue.task SET status = 1, time_ended = now() WHERE status = 5")


def _queue(client: pgqueue.TaskBackend, tenant: str, n: int, seconds: float = 0.0) -> None:
    client.queue_many(
        [pgqueue.Call("one_per_tenant", kwargs={"tenant": tenant, "seconds": seconds})] * n
    )


def test_a_key_at_its_limit_does_not_hold_back_the_keys_behind_it(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    _queue(client, "a", 30)  # first in the queue, limit 1 per tenant
    _queue(client, "b", 1)
    _queue(client, "c", 1)
    assert _claim(dsn, client, 10) == ["a", "b", "c"]  # one each: b and c behind 30 of a
    assert _claim(dsn, client, 10) == []  # every key at its limit: nothing, a stays queued
    _finish_started(dsn)
    assert _claim(dsn, client, 10) == ["a"]
    waiting = sql(dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE status = 6")[0]["n"]
    assert waiting == 28


def test_keys_take_turns_whatever_their_backlog(dsn: str, client: pgqueue.TaskBackend) -> None:
    _queue(client, "big", 50)
    _queue(client, "b", 4)
    _queue(client, "c", 4)
    order: list[str] = []
    for _ in range(15):  # one task per claim, finished before the next claim
        order += _claim(dsn, client, 1)
        _finish_started(dsn)
    # Round robin: each window of 3 consecutive starts holds every key once while all wait.
    assert all(sorted(order[i : i + 3]) == ["b", "big", "c"] for i in range(0, 12, 3)), order
    assert Counter(order[:12]) == {"big": 4, "b": 4, "c": 4}
    assert order[12:] == ["big"] * 3  # b and c done: big has the queue to itself


def test_one_claim_gives_each_key_a_turn_before_any_key_a_second(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    # rated_per_tenant: 5 at once, 2 starts a minute per tenant.
    client.queue_many(
        [pgqueue.Call("rated_per_tenant", kwargs={"tenant": "x"})] * 20
        + [pgqueue.Call("rated_per_tenant", kwargs={"tenant": t}) for t in "yz"]
    )
    assert _claim(dsn, client, 4) == ["x", "x", "y", "z"]
    assert _claim(dsn, client, 4) == []  # x used its 2 starts, y and z have no more tasks
    rows = sql(dsn, "SELECT scope, count(*) AS n FROM pgqueue.flow_start GROUP BY 1 ORDER BY 1")
    assert rows == [
        {"scope": "job rated_per_tenant 'x'", "n": 2},
        {"scope": "job rated_per_tenant 'y'", "n": 1},
        {"scope": "job rated_per_tenant 'z'", "n": 1},
    ]


@pytest.mark.slow
def test_a_worker_starts_a_small_tenant_while_a_big_one_waits(
    dsn: str, client: pgqueue.TaskBackend, start_worker: Any
) -> None:
    _queue(client, "big", 40, seconds=0.1)  # 4 s of work at 1 at a time
    _queue(client, "small", 3, seconds=0.0)
    start_worker(task_paths=[FLOW_JOBS], queues=["turns"], backlog=4)

    def small_done() -> bool:
        rows = sql(
            dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE limit_key = 'small' AND status = 1"
        )
        return int(rows[0]["n"]) == 3

    wait_until(small_done, 10, "the 3 tasks of tenant small finished")
    waiting = sql(
        dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE limit_key = 'big' AND status = 6"
    )[0]["n"]
    assert waiting >= 30  # small did not wait for big's backlog


def test_sql_queue_task_takes_the_limits_the_library_stores(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    library = client.queue_task("rated_per_tenant", tenant="acme")
    by_sql = sql(
        dsn,
        "SELECT pgqueue.queue_task('rated_per_tenant', %s::jsonb, 'turns', limit_key => 'acme',"
        " concurrency => 5, rate_count => 2, rate_seconds => 60) AS id",
        [json.dumps({"tenant": "acme"})],
    )[0]["id"]
    columns = "name, queue, limit_key, concurrency, rate_count, rate_seconds"
    rows = sql(dsn, f"SELECT {columns} FROM pgqueue.task WHERE id IN (%s, %s)", [library, by_sql])
    assert len(rows) == 2 and rows[0] == rows[1]
    assert rows[0]["limit_key"] == "acme" and rows[0]["rate_count"] == 2


def test_tasks_queued_by_sql_are_held_to_their_limits(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    for tenant in ["a", "a", "a", "b"]:
        sql(
            dsn,
            "SELECT pgqueue.queue_task('one_per_tenant', %s::jsonb, 'turns',"
            " limit_key => %s, concurrency => 1)",
            [json.dumps({"tenant": tenant, "seconds": 0}), tenant],
        )
    assert _claim(dsn, client, 10) == ["a", "b"]


@pytest.mark.parametrize(
    "limits",
    [
        "concurrency => 0",
        "rate_count => 2",
        "rate_seconds => 1",
        "rate_count => 0, rate_seconds => 1",
        "rate_count => 1, rate_seconds => 0",
        "limit_key => 'a'",
    ],
)
def test_sql_queue_task_refuses_bad_limits_and_queues_nothing(dsn: str, limits: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="queue_task: "):
        sql(dsn, f"SELECT pgqueue.queue_task('one_per_tenant', '{{}}', 'turns', {limits})")
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 0


def _prune(dsn: str, client: pgqueue.TaskBackend, limit: int) -> int:
    with connect(dsn) as conn:
        return client.store.prune_flow_starts(limit=limit).run(conn)


def _flow_starts(dsn: str) -> list[str]:
    rows = sql(dsn, "SELECT scope FROM pgqueue.flow_start ORDER BY reopens_at, scope")
    return [row["scope"] for row in rows]


def test_the_start_log_of_keys_never_used_again_is_pruned_in_batches(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    sql(
        dsn,
        "INSERT INTO pgqueue.flow_start (scope, queue, reopens_at)"
        " SELECT 'job gone ' || quote_literal('k' || i), 'turns', now() - i * interval '1 minute'"
        " FROM generate_series(1, 5) i"
        " UNION ALL SELECT 'job live ''k''', 'turns', now() + interval '1 hour'",
    )
    assert _prune(dsn, client, 2) == 2  # the oldest two
    assert _flow_starts(dsn) == ["job gone 'k3'", "job gone 'k2'", "job gone 'k1'", "job live 'k'"]
    assert _prune(dsn, client, 10) == 3
    assert _flow_starts(dsn) == ["job live 'k'"]  # still inside its window: kept


@pytest.mark.slow
def test_a_worker_prunes_the_start_log_of_keys_never_used_again(
    dsn: str, client: pgqueue.TaskBackend, start_worker: Any
) -> None:
    sql(
        dsn,
        "INSERT INTO pgqueue.flow_start (scope, queue, reopens_at)"
        " SELECT 'job gone ' || quote_literal('k' || i), 'elsewhere', now() - interval '1 s'"
        " FROM generate_series(1, 50) i",
    )
    start_worker(task_paths=[FLOW_JOBS], queues=["turns"], poll_timeout=0.5)
    wait_until(lambda: not _flow_starts(dsn), 10, "the worker's maintenance pruned flow_start")

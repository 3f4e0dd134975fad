"""The claim without flow control (issue 13's cost target): the same tasks as the
flow-controlled claim when nothing is limited, none as soon as any candidate is (a job's limit,
or a queue limit set at run time by SQL), so a limit is never bypassed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import pgqueue
from pgqueue._db import connect
from tests.support.fixtures import sql

FLOW_JOBS = "tests.support.flow_jobs"
JOBS = ["unlimited", "one_at_a_time", "per_tenant"]


@pytest.fixture
def client(dsn: str) -> Iterator[pgqueue.TaskBackend]:
    with pgqueue.TaskBackend(dsn, task_paths=[FLOW_JOBS]) as backend:
        yield backend


def _claim(dsn: str, client: pgqueue.TaskBackend, *, unlimited: bool) -> list[Any]:
    """Claim up to 5 tasks of queue flow, in a transaction rolled back."""
    store = client.store
    args: dict[str, Any] = {"queues": ["flow"], "jobs": JOBS, "limit": 5, "worker": "t"}
    op = store.claim_unlimited_tasks(**args) if unlimited else store.claim_tasks(**args)
    with connect(dsn, autocommit=False) as conn:
        rows = conn.execute(op.sql, op.params).fetchall()
        conn.rollback()
    return [row["id"] for row in rows]


def test_without_limits_it_claims_what_the_flow_claim_does(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    ids = [client.queue_task("unlimited", seconds=0, priority=p % 3) for p in range(8)]
    flow = _claim(dsn, client, unlimited=False)
    assert len(flow) == 5 and set(flow) <= set(ids)
    assert sorted(_claim(dsn, client, unlimited=True)) == sorted(flow)  # RETURNING: any order


def test_a_limited_candidate_makes_it_claim_nothing(dsn: str, client: pgqueue.TaskBackend) -> None:
    client.queue_task("unlimited", seconds=0, priority=1)
    client.queue_task("one_at_a_time", seconds=0)  # concurrency 1, among the candidates
    assert _claim(dsn, client, unlimited=True) == []
    assert len(_claim(dsn, client, unlimited=False)) == 2  # one each: the limit admits it


def test_a_queue_limit_set_by_sql_makes_it_claim_nothing(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    for _ in range(3):
        client.queue_task("unlimited", seconds=0)
    assert len(_claim(dsn, client, unlimited=True)) == 3
    sql(dsn, "SELECT pgqueue.set_queue_limit('flow', 1, NULL, NULL)")
    assert _claim(dsn, client, unlimited=True) == []
    assert len(_claim(dsn, client, unlimited=False)) == 1  # the queue's limit holds

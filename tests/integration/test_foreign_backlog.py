"""F33 "foreign backlog" (issue 16, revision pgqueue_0014_claim_by_job): the tasks of jobs a
worker does not know, queued in its queue ahead of its own, cost its claims nothing. The claim
read the queue's claimable tasks in claim order and kept its own jobs' (200,000 foreign tasks:
3,856 buffers and 17 ms per empty claim); it now reads each of its jobs on its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command

import pgqueue
from pgqueue._db import connect
from pgqueue._schema import _sqlalchemy_connection, alembic_config, migrate
from tests.support.fixtures import sql
from tests.support.plans import explain_as_claimer

FLOW_JOBS = "tests.support.flow_jobs"

#: Tasks of a job no worker of these tests knows, queued an hour ago (so ahead of every task
#: queued by the test in claim order), in one statement.
FOREIGN = """
INSERT INTO pgqueue.task (name, queue, run_at, limit_key, concurrency)
SELECT %(name)s, %(queue)s, now() - interval '1 hour' + g * interval '1 ms',
       CASE WHEN %(keys)s::int > 0 THEN 'k' || (g %% %(keys)s::int) END,
       CASE WHEN %(keys)s::int > 0 THEN 1 END
FROM generate_series(1, %(count)s::int) AS g
"""


def _foreign(dsn: str, count: int, *, name: str, queue: str, keys: int = 0) -> None:
    """``count`` queued tasks of job ``name``; with ``keys``, limited to one at a time per
    key, over that many keys."""
    sql(dsn, FOREIGN, {"name": name, "queue": queue, "count": count, "keys": keys})
    sql(dsn, "ANALYZE pgqueue.task")


def _explain_claim(dsn: str, op: Any) -> dict[str, Any]:
    """The claim statement of ``op`` as the worker's claimer runs it (prepared on a connection
    set up by ``claim_session``: one generic plan), executed and explained with its buffers,
    rolled back; the second of two runs, as a claimer runs it again and again."""
    with connect(dsn, autocommit=False) as conn:
        return explain_as_claimer(conn, op.sql, op.params, runs=2)


def _buffers(explained: dict[str, Any]) -> int:
    plan = explained["Plan"]
    return int(plan["Shared Hit Blocks"] + plan["Shared Read Blocks"])


@pytest.fixture
def client(dsn: str) -> Iterator[pgqueue.TaskBackend]:
    with pgqueue.TaskBackend(dsn, task_paths=[FLOW_JOBS]) as backend:
        yield backend


@pytest.mark.parametrize("jobs", [["unlimited"], ["unlimited", "per_tenant", "one_at_a_time"]])
def test_f33_other_jobs_backlog_costs_a_claim_nothing(
    dsn: str, client: pgqueue.TaskBackend, jobs: list[str]
) -> None:
    """50,000 tasks of a job the worker does not know are ahead of its one task in the queue:
    both claim statements (generic plans, as the claimer keeps them) still read tens of
    buffers, not thousands, and start that task; with nothing of its own queued, an empty
    claim reads as few."""
    _foreign(dsn, 50_000, name="elsewhere", queue="flow")
    store = client.store
    ops = [store.claim_unlimited_tasks, store.claim_tasks]
    for claim in ops:
        op = claim(queues=["flow"], jobs=jobs, limit=20, worker="t")
        empty = _explain_claim(dsn, op)
        assert empty["Plan"]["Actual Rows"] == 0
        assert _buffers(empty) < 50, _buffers(empty)
    mine = client.queue_task("unlimited", seconds=0)
    for claim in ops:
        op = claim(queues=["flow"], jobs=jobs, limit=20, worker="t")
        explained = _explain_claim(dsn, op)
        assert explained["Plan"]["Actual Rows"] == 1  # the worker's own task, started
        assert _buffers(explained) < 100, _buffers(explained)
    with connect(dsn, autocommit=False) as conn:
        op = store.claim_unlimited_tasks(queues=["flow"], jobs=jobs, limit=20, worker="t")
        assert [row["id"] for row in conn.execute(op.sql, op.params).fetchall()] == [mine]


def test_f33_other_jobs_limit_keys_leave_a_claim_its_budget(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    """Another worker's limited job has 1,000 keys with tasks queued (more than a claim's
    budget of scopes, ``FLOW_SCOPES_PER_CLAIM``, and ahead in the walk's order): the first
    claim of this worker's limited job still starts its tasks, one per key, at once."""
    _foreign(dsn, 20_000, name="a_foreign_job", queue="turns", keys=1000)
    for tenant in ("t1", "t2", "t3"):
        client.queue_many([pgqueue.Call("one_per_tenant", kwargs={"tenant": tenant, "seconds": 0})])
    op = client.store.claim_tasks(queues=["turns"], jobs=["one_per_tenant"], limit=10, worker="t")
    with connect(dsn, autocommit=False) as conn:
        claimed = [row["name"] for row in conn.execute(op.sql, op.params).fetchall()]
        conn.commit()
    assert claimed == ["one_per_tenant"] * 3
    explained = _explain_claim(dsn, op)  # the keys are at their limit now: nothing to start
    assert explained["Plan"]["Actual Rows"] == 0
    assert _buffers(explained) < 100, _buffers(explained)


@pytest.mark.parametrize("fair", [False, True])
def test_claims_across_jobs_keep_the_claim_order(
    dsn: str, client: pgqueue.TaskBackend, fair: bool
) -> None:
    """A worker of several jobs claims their tasks in one order, priority then run_at then
    id, across jobs and claims (the jobs are read each on its own, then merged), and leaves
    the tasks of jobs it does not know."""
    sql(
        dsn,
        """
        INSERT INTO pgqueue.task (name, queue, priority, run_at)
        SELECT (ARRAY['unlimited', 'second_job', 'other'])[1 + g % 3], 'flow', g % 4,
               now() - interval '1 minute' + (g % 7) * interval '1 s'
        FROM generate_series(1, 60) AS g
        """,
    )
    expected = [
        r["id"]
        for r in sql(
            dsn,
            "SELECT id::text AS id FROM pgqueue.task WHERE name IN ('unlimited', 'second_job') "
            "ORDER BY priority DESC, run_at, id",
        )
    ]
    jobs = ["unlimited", "second_job"]
    claimed: list[str] = []
    for n in range(8):
        args: dict[str, Any] = {"queues": ["flow"], "jobs": jobs, "limit": 7, "worker": "t"}
        if n % 2 and not fair:
            op = client.store.claim_unlimited_tasks(**args)
        else:
            op = client.store.claim_tasks(**args, fair=fair)
        with connect(dsn, autocommit=False) as conn:
            ids = [row["id"] for row in conn.execute(op.sql, op.params).fetchall()]
            conn.commit()
        order = sql(
            dsn,
            "SELECT id::text AS id FROM pgqueue.task WHERE id = ANY(%s::uuid[]) "
            "ORDER BY priority DESC, run_at, id",
            [ids],
        )
        claimed += [r["id"] for r in order]
    assert claimed == expected
    left = sql(dsn, "SELECT DISTINCT name FROM pgqueue.task WHERE status = 6")
    assert [r["name"] for r in left] == ["other"]


@pytest.mark.parametrize("unlimited", [True, False])
def test_a_claim_takes_what_a_concurrent_claim_leaves(
    dsn: str, client: pgqueue.TaskBackend, unlimited: bool
) -> None:
    """Another claim holds (uncommitted) the first tasks in claim order, all of one job: a
    claim running meanwhile still takes a full share, the next tasks of the other job, as
    when the claim read the queue in one scan."""
    sql(
        dsn,
        """
        INSERT INTO pgqueue.task (name, queue, priority)
        SELECT CASE WHEN g <= 3 THEN 'unlimited' ELSE 'second_job' END, 'flow',
               CASE WHEN g <= 3 THEN 5 ELSE 0 END
        FROM generate_series(1, 10) AS g
        """,
    )
    jobs = ["unlimited", "second_job"]

    def claim(conn: Any, limit: int) -> list[str]:
        args: dict[str, Any] = {"queues": ["flow"], "jobs": jobs, "limit": limit, "worker": "t"}
        store = client.store
        op = store.claim_unlimited_tasks(**args) if unlimited else store.claim_tasks(**args)
        return sorted(row["name"] for row in conn.execute(op.sql, op.params).fetchall())

    with connect(dsn, autocommit=False) as first, connect(dsn, autocommit=False) as second:
        assert claim(first, 3) == ["unlimited"] * 3  # held until first commits
        assert claim(second, 3) == ["second_job"] * 3
        second.commit()
        first.commit()


def test_downgrade_gives_back_the_claim_index_per_queue_and_flow_take(empty_dsn: str) -> None:
    """Revision pgqueue_0014_claim_by_job down: ``task_claimable`` and ``flow_take`` as
    revision pgqueue_0013_queue_stats had them; up again: as this revision makes them."""

    def state() -> tuple[set[str], str]:
        indexes = {
            r["indexname"]
            for r in sql(empty_dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'task'")
        }
        source = sql(empty_dsn, "SELECT prosrc FROM pg_proc WHERE proname = 'flow_take'")
        return indexes & {"task_claimable", "task_claimable_job"}, source[0]["prosrc"]

    migrate(empty_dsn, "pgqueue")
    assert state()[0] == {"task_claimable_job"}
    assert state()[1].count("x.name = ANY(jobs)") == 2
    cfg = alembic_config("pgqueue")
    with _sqlalchemy_connection(empty_dsn) as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "pgqueue_0013_queue_stats")
    assert state()[0] == {"task_claimable"}
    assert "x.name = ANY(jobs)" not in state()[1]
    migrate(empty_dsn, "pgqueue")
    assert state()[0] == {"task_claimable_job"}
    assert state()[1].count("x.name = ANY(jobs)") == 2

"""The operator views of revision pgqueue_0004_operations, against known sets of tasks.

Each test writes its rows and reads the view in one transaction, so ``now()`` is the same for
both and every duration is exact.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command

from pgqueue import states
from pgqueue._ops import SPANS
from pgqueue._schema import _sqlalchemy_connection, alembic_config, migrate
from pgqueue._store import Store
from tests.support.fixtures import sql
from tests.support.ops_data import add_task, add_worker, transaction
from tests.support.plans import plan_nodes

VIEWS = ["task_state", "queue_stats", "queue_throughput", "queue_timeline", "worker_status",
         "stuck_tasks", "queue_overview"]  # fmt: skip


def test_task_state_names_states_and_measures_wait_and_run(dsn: str) -> None:
    with transaction(dsn) as conn:
        done = add_task(conn, "a", states.SUCCESS, queued=10, started=7, ended=4.5)
        waiting = add_task(conn, "a", states.QUEUED, queued=8)
        later = add_task(conn, "a", states.QUEUED, queued=8, run_at=-60)
        rows = {
            r["id"]: r
            for r in conn.execute(
                "SELECT id::text, state, wait, run, wait_seconds, run_seconds, overdue "
                "FROM pgqueue.task_state"
            ).fetchall()
        }
    assert rows[done]["state"] == "SUCCESS"
    assert rows[done]["wait"] == timedelta(seconds=3)
    assert rows[done]["run"] == timedelta(seconds=2.5)
    assert (rows[done]["wait_seconds"], rows[done]["run_seconds"]) == (3.0, 2.5)
    assert rows[done]["overdue"] is None
    assert rows[waiting]["state"] == "QUEUED" and rows[waiting]["wait"] is None
    assert rows[waiting]["overdue"] == timedelta(seconds=8)
    assert rows[later]["overdue"] is None  # not due yet


def test_queue_stats_counts_each_state_and_the_oldest_waiting_task(dsn: str) -> None:
    with transaction(dsn) as conn:
        for _ in range(2):
            add_task(conn, "a", states.QUEUED, queue="q1", queued=30)
        add_task(conn, "a", states.QUEUED, queue="q1", queued=100, run_at=-50)  # not due
        add_task(conn, "a", states.RETRY, queue="q1", queued=200, run_at=40, started=150)
        add_task(conn, "a", states.STARTED, queue="q1", queued=20, started=10)
        for _ in range(2):
            add_task(conn, "a", states.FAILURE, queue="q1", queued=20, started=10, ended=5)
        for _ in range(4):
            add_task(conn, "a", states.SUCCESS, queue="q1", queued=20, started=10, ended=5)
        add_task(conn, "a", states.REVOKED, queue="q1", queued=20, ended=5)
        add_task(conn, "b", states.SUCCESS, queue="q2", queued=3, started=2, ended=1)
        rows = conn.execute("SELECT * FROM pgqueue.queue_stats ORDER BY queue, name").fetchall()
    assert len(rows) == 2
    a, b = rows
    assert (a["queue"], a["name"]) == ("q1", "a")
    counts = {k: a[k] for k in ("queued", "started", "retry", "revoked", "failure", "success")}
    assert counts == {
        "queued": 3,
        "started": 1,
        "retry": 1,
        "revoked": 1,
        "failure": 2,
        "success": 4,
    }
    assert a["due"] == 3  # two QUEUED and the RETRY; the delayed one is not due
    assert a["oldest_queued_age"] == timedelta(seconds=200)
    assert a["oldest_due_age"] == timedelta(seconds=40)
    assert (b["success"], b["queued"], b["oldest_queued_age"], b["oldest_due_age"]) == (
        1,
        0,
        None,
        None,
    )


def test_queue_overview_counts_live_tasks_as_queue_stats_and_only_the_last_hour(
    dsn: str,
) -> None:
    with transaction(dsn) as conn:
        for _ in range(2):
            add_task(conn, "a", states.QUEUED, queue="q1", queued=30)
        add_task(conn, "a", states.QUEUED, queue="q1", queued=100, run_at=-50)  # not due
        child = add_task(conn, "a", states.QUEUED, queue="q1", queued=300)
        conn.execute("UPDATE pgqueue.task SET waiting_on = 1 WHERE id = %s", (child,))
        add_task(conn, "a", states.RETRY, queue="q1", queued=200, run_at=40, started=150)
        add_task(conn, "a", states.STARTED, queue="q1", queued=20, started=10)
        add_task(conn, "a", states.FAILURE, queue="q1", queued=20, started=10, ended=5)
        for _ in range(3):
            add_task(conn, "a", states.SUCCESS, queue="q1", queued=20, started=10, ended=5)
        add_task(conn, "a", states.SUCCESS, queue="q1", queued=9000, started=8000, ended=7200)
        add_task(conn, "a", states.REVOKED, queue="q1", queued=20, ended=5)
        add_task(conn, "b", states.SUCCESS, queue="q2", queued=9000, started=8000, ended=7200)
        stats = conn.execute("SELECT * FROM pgqueue.queue_stats ORDER BY queue, name").fetchall()
        rows = conn.execute("SELECT * FROM pgqueue.queue_overview ORDER BY queue, name").fetchall()
    live = ("queued", "started", "retry", "due", "oldest_queued_age", "oldest_due_age")
    assert len(rows) == 1  # q2 has nothing live and nothing finished within the hour
    (a,) = rows
    assert {k: a[k] for k in live} == {k: stats[0][k] for k in live}
    assert (a["queued"], a["due"], a["oldest_queued_age"]) == (4, 4, timedelta(seconds=300))
    assert (a["success_last_hour"], a["failure_last_hour"], a["revoked_last_hour"]) == (3, 1, 1)
    assert stats[0]["success"] == 4  # queue_stats keeps counting the whole history


@pytest.mark.parametrize("view", ["queue_overview", "queue_timeline", "queue_throughput"])
def test_the_overview_views_read_no_task_but_live_and_recent_ones(dsn: str, view: str) -> None:
    """Every branch of these views is an index scan (live tasks by the partial indexes,
    finished ones by end time), even where PostgreSQL would rather read a small table whole:
    their cost does not grow with the history kept."""
    with transaction(dsn) as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            str(row["QUERY PLAN"])
            for row in conn.execute(f"EXPLAIN SELECT * FROM pgqueue.{view}").fetchall()
        )
    assert "Seq Scan on task" not in plan, plan
    live = ("task_claimable_job", "task_waiting", "task_started_worker")
    for index in ("task_ended", *(live if view != "queue_throughput" else ())):
        assert index in plan, plan


@pytest.mark.parametrize("span", ["day", "week"])
def test_the_day_and_week_charts_read_the_index_of_finished_tasks_alone(
    dsn: str, span: str
) -> None:
    """The charts of the last day and week count the tasks finished in the range per queue,
    failures apart, from ``task_ended`` alone (revision pgqueue_0015_ended_covering): an
    index-only scan, no read of the table, whose rows the history makes the bulk of."""
    sql(
        dsn,
        "INSERT INTO pgqueue.task (name, queue, status, time_ended) "
        "SELECT 'a', 'q' || (i % 3), CASE WHEN i % 10 = 0 THEN 2 ELSE 1 END, "
        "now() - i * interval '1 minute' FROM generate_series(1, 3000) AS i",
    )
    sql(dsn, "VACUUM ANALYZE pgqueue.task")
    op = Store("pgqueue").queue_activity(step=SPANS[span] / 60, buckets=60)
    with transaction(dsn) as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        explained = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + op.sql, op.params)
        plan = explained.fetchone()["QUERY PLAN"][0]["Plan"]
        rows = conn.execute(op.sql, op.params).fetchall()
    scans = [n for n in plan_nodes(plan) if n.get("Relation Name") == "task"]
    assert [(n["Node Type"], n["Index Name"]) for n in scans] == [
        ("Index Only Scan", "task_ended")
    ], scans
    assert scans[0]["Heap Fetches"] == 0, scans
    first = min(r["minute"] for r in rows)
    in_range = sql(
        dsn,
        "SELECT count(*) AS n, count(*) FILTER (WHERE status = 2) AS failed "
        "FROM pgqueue.task WHERE time_ended >= %s",
        (first,),
    )[0]
    assert sum(r["finished"] for r in rows) == in_range["n"] > 1000, rows
    assert sum(r["failed"] for r in rows) == in_range["failed"] > 100, rows
    assert {r["queue"] for r in rows} == {"q0", "q1", "q2"}


def test_queue_throughput_counts_rates_and_percentiles_per_period(dsn: str) -> None:
    with transaction(dsn) as conn:
        # Four tasks ended within the last minute: waits 1, 2, 3, 4 s; runs 0.5 s each.
        for wait in (1, 2, 3, 4):
            add_task(conn, "a", states.SUCCESS, queued=20 + wait, started=20, ended=19.5)
        add_task(conn, "a", states.FAILURE, queued=1810, started=1800, ended=1790)  # 30 min ago
        add_task(conn, "a", states.REVOKED, queued=1900, ended=1800)  # never started
        add_task(conn, "a", states.SUCCESS, queued=9000, started=8000, ended=7200)  # 2 h ago
        rows = {
            r["period"]: r
            for r in conn.execute("SELECT * FROM pgqueue.queue_throughput").fetchall()
        }
    minute, hour = rows["1 minute"], rows["1 hour"]
    assert (minute["finished"], minute["succeeded"], minute["failed"]) == (4, 4, 0)
    assert minute["per_second"] == pytest.approx(4 / 60)
    assert minute["wait_p50"] == pytest.approx(2.5)
    assert minute["wait_p95"] == pytest.approx(3.85)  # interpolated: 3 + 0.85 * (4 - 3)
    assert minute["run_p50"] == minute["run_p95"] == pytest.approx(0.5)
    assert (hour["finished"], hour["failed"], hour["revoked"]) == (6, 1, 1)
    assert hour["per_second"] == pytest.approx(6 / 3600)
    # Waits 1, 2, 3, 4 and 10 s (the revoked task never started and has none).
    assert hour["wait_p50"] == pytest.approx(3.0)
    assert hour["wait_p95"] == pytest.approx(8.8)  # 4 + 0.8 * (10 - 4)
    assert hour["run_p50"] == pytest.approx(0.5)


def test_queue_timeline_has_sixty_minutes_of_finished_tasks_and_depth(dsn: str) -> None:
    with transaction(dsn) as conn:
        minute_start = conn.execute(
            "SELECT extract(epoch FROM now() - date_trunc('minute', now()))::float8 AS s"
        ).fetchone()
        assert minute_start is not None
        into = minute_start["s"]  # seconds since the current minute began
        add_task(conn, "a", states.SUCCESS, queue="q1", queued=into + 400, started=into + 250,
                 ended=into + 200)  # fmt: skip
        add_task(conn, "a", states.FAILURE, queue="q1", queued=into + 400, started=into + 250,
                 ended=into + 200)  # fmt: skip
        add_task(conn, "a", states.QUEUED, queue="q1", queued=into + 90)
        add_task(conn, "a", states.SUCCESS, queue="q1", queued=7300, started=7200, ended=7100)
        rows = conn.execute(
            "SELECT * FROM pgqueue.queue_timeline WHERE queue = 'q1' ORDER BY minute"
        ).fetchall()
    assert len(rows) == 60
    assert rows[-1]["minute"] > rows[0]["minute"]
    assert sum(r["finished"] for r in rows) == 2
    assert sum(r["failed"] for r in rows) == 1
    # Ended 200 s before the current minute began: in the minute starting 240 s before it.
    finished_at = [i for i, r in enumerate(rows) if r["finished"]]
    assert finished_at == [len(rows) - 1 - 4]
    # Depth at the end of each minute: the finished tasks waited from 400 s to 250 s before
    # this minute began; the QUEUED one waits since 90 s before it.
    assert [r["depth"] for r in rows[-9:]] == [0, 2, 2, 0, 0, 0, 1, 1, 1]


def test_worker_status_tells_alive_stopped_and_lost_with_running_tasks(dsn: str) -> None:
    with transaction(dsn) as conn:
        add_worker(conn, "w-alive", heartbeat=2, lease=10)
        add_worker(conn, "w-lost", heartbeat=60, lease=10)
        add_worker(conn, "w-stopped", heartbeat=30, stopped=30)
        first = add_task(conn, "a", states.STARTED, queued=9, started=8, worker="w-alive")
        second = add_task(conn, "b", states.STARTED, queued=9, started=3, worker="w-alive")
        add_task(conn, "a", states.SUCCESS, queued=9, started=8, ended=1, worker="w-alive")
        rows = {r["id"]: r for r in conn.execute("SELECT * FROM pgqueue.worker_status")}
    alive, lost, stopped = rows["w-alive"], rows["w-lost"], rows["w-stopped"]
    assert (alive["state"], lost["state"], stopped["state"]) == ("alive", "lost", "stopped")
    assert alive["heartbeat_age"] == timedelta(seconds=2)
    assert lost["heartbeat_age"] == timedelta(seconds=60)
    assert alive["running"] == 2
    assert [str(t) for t in alive["task_ids"]] == [first, second]  # oldest start first
    assert sorted(alive["jobs"]) == ["a", "b"]
    assert (lost["running"], lost["task_ids"], lost["jobs"]) == (0, [], [])


def test_stuck_tasks_lists_lost_workers_tasks_and_unswept_expired_ones(dsn: str) -> None:
    with transaction(dsn) as conn:
        add_worker(conn, "w-alive", heartbeat=1, lease=10)
        add_worker(conn, "w-lost", heartbeat=60, lease=10)
        add_task(conn, "a", states.STARTED, queued=90, started=80, worker="w-alive")
        orphan = add_task(conn, "a", states.STARTED, queued=90, started=80, worker="w-lost")
        unknown = add_task(conn, "a", states.STARTED, queued=90, started=80, worker="w-gone")
        expired = add_task(conn, "b", states.QUEUED, queued=90, expiry=15)
        add_task(conn, "b", states.QUEUED, queued=90, expiry=-15)  # not expired yet
        rows = {str(r["id"]): r for r in conn.execute("SELECT * FROM pgqueue.stuck_tasks")}
    assert set(rows) == {orphan, unknown, expired}
    assert rows[orphan]["reason"] == "worker lost"
    assert rows[orphan]["overdue"] == timedelta(seconds=50)  # heartbeat 60 s ago, lease 10 s
    assert rows[unknown]["overdue"] is None
    assert (rows[expired]["reason"], rows[expired]["state"]) == ("past expiry", "QUEUED")
    assert rows[expired]["overdue"] == timedelta(seconds=15)


def test_every_view_and_view_column_is_commented(dsn: str) -> None:
    rows = sql(
        dsn,
        "SELECT c.relname, obj_description(c.oid, 'pg_class') AS comment, "
        "count(*) FILTER (WHERE col_description(c.oid, a.attnum) IS NULL) AS bare "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
        "WHERE n.nspname = 'pgqueue' AND c.relname = ANY(%s) GROUP BY c.oid, c.relname",
        (VIEWS,),
    )
    assert sorted(r["relname"] for r in rows) == sorted(VIEWS)
    assert all(r["comment"] and r["bare"] == 0 for r in rows), rows


@pytest.mark.slow
def test_downgrade_restores_the_core_task_state_view(empty_dsn: str) -> None:
    migrate(empty_dsn, "pgqueue")
    cfg = alembic_config("pgqueue")
    with _sqlalchemy_connection(empty_dsn) as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "pgqueue_0003_integration")
    views = {r["viewname"] for r in sql(empty_dsn, "SELECT viewname FROM pg_views "
                                        "WHERE schemaname = 'pgqueue'")}  # fmt: skip
    assert "task_state" in views and not views & set(VIEWS[1:])
    columns = [r["column_name"] for r in sql(
        empty_dsn,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'pgqueue' "
        "AND table_name = 'task_state' ORDER BY ordinal_position",
    )]  # fmt: skip
    assert columns[-3:] == ["error", "kwargs", "result"]
    migrate(empty_dsn, "pgqueue")
    assert len(sql(empty_dsn, "SELECT * FROM pgqueue.queue_stats")) == 0


@pytest.mark.parametrize("wanted", [["QUEUED"], ["STARTED", "RETRY"], ["FAILURE"]])
def test_the_task_list_of_live_states_reads_only_live_tasks(dsn: str, wanted: list[str]) -> None:
    """Filtered to live states, the list and its count read the live rows through their
    partial indexes, not the whole history in list order (``task_changed``); other filters
    keep the list's own index. Either way the rows are the same as a plain filter's."""
    store = Store("pgqueue")
    with transaction(dsn) as conn:
        for code in (states.QUEUED, states.STARTED, states.RETRY, states.SUCCESS, states.FAILURE):
            done = code in states.READY_STATES
            for n in range(3):
                started = 50.0 - n if code in (states.STARTED, *states.READY_STATES) else None
                ended = 10.0 - n if done else None
                add_task(conn, f"job{n}", code, queued=100 + n, started=started, ended=ended)
        filters = {"jobs": None, "queues": None, "since": None, "args": None}
        page = store.list_tasks(states=wanted, limit=50, offset=0, **filters)
        count = store.count_tasks(states=wanted, cap=100, **filters)
        expected = conn.execute(
            "SELECT id::text AS id FROM pgqueue.task_state WHERE state = ANY(%s) "
            "ORDER BY COALESCE(time_ended, time_started, time_queued) DESC, id",
            [wanted],
        ).fetchall()
        assert [r["id"] for r in page.run(conn)] == [r["id"] for r in expected]
        assert count.run(conn) == len(expected) == 3 * len(wanted)
        conn.execute("SET LOCAL enable_seqscan = off")
        plans = [
            "\n".join(
                str(row["QUERY PLAN"])
                for row in conn.execute("EXPLAIN " + op.sql, op.params).fetchall()
            )
            for op in (page, count)
        ]
    if set(wanted) <= {"QUEUED", "STARTED", "RETRY"}:
        for plan in plans:
            assert "task_changed" not in plan and "Seq Scan on task t" not in plan, plan
    else:
        assert "task_changed" in plans[0], plans[0]

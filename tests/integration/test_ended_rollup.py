"""The per-minute summary of finished tasks behind the dashboard's charts (revision
pgqueue_0016_ended_per_minute, issue 18): after a roll-up a chart reads the summed-up minutes
and only the tasks finished since, and draws exactly what counting every task would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from alembic import command
from psycopg.conninfo import make_conninfo

from pgqueue import TaskBackend
from pgqueue._ops import SPANS, Operations
from pgqueue._schema import _sqlalchemy_connection, alembic_config, migrate
from pgqueue._store import Store
from tests.support.fixtures import sql
from tests.support.ops_data import transaction
from tests.support.plans import plan_nodes

STORE = Store("pgqueue")

#: 6,000 finished tasks spread over the last 50 hours (one every 30 s), three queues, one in
#: ten FAILURE, one in fifty REVOKED.
HISTORY = (
    "INSERT INTO pgqueue.task (name, queue, status, time_ended) "
    "SELECT 'a', 'q' || (i % 3), CASE WHEN i % 10 = 0 THEN 2 WHEN i % 50 = 7 THEN 3 ELSE 1 END, "
    "now() - i * interval '30 seconds' FROM generate_series(1, 6000) AS i"
)


def _finished(dsn: str, ago: float, queue: str = "q0", status: int = 1) -> None:
    sql(
        dsn,
        "INSERT INTO pgqueue.task (name, queue, status, time_ended) "
        "VALUES ('a', %s, %s, now() - %s * interval '1 second')",
        (queue, status, ago),
    )


def _chart_and_truth(dsn: str, span: str) -> tuple[list[dict[str, Any]], dict[Any, Any]]:
    """The chart's rows, and the same counts taken from every task, in one transaction (one
    ``now()`` for both)."""
    step = SPANS[span] / 60
    op = STORE.queue_activity(step=step, buckets=60)
    with transaction(dsn) as conn:
        rows = conn.execute(op.sql, op.params).fetchall()
        first = min(r["minute"] for r in rows)
        truth = conn.execute(
            "SELECT queue, date_bin(%s * interval '1 second', time_ended, "
            "timestamptz '2000-01-01') AS minute, count(*) AS finished, "
            "count(*) FILTER (WHERE status = 2) AS failed FROM pgqueue.task "
            "WHERE status IN (1, 2, 3) AND time_ended >= %s GROUP BY 1, 2",
            (step, first),
        ).fetchall()
    return rows, {(t["queue"], t["minute"]): (t["finished"], t["failed"]) for t in truth}


def _assert_chart_is_true(dsn: str, span: str) -> int:
    rows, truth = _chart_and_truth(dsn, span)
    drawn = {(r["queue"], r["minute"]): (r["finished"], r["failed"]) for r in rows if r["finished"]}
    assert drawn == truth
    return sum(r["finished"] for r in rows)


#: Seconds a test of this module may take between its first and last look at the minute.
MINUTE_MARGIN = 8.0


@pytest.fixture(autouse=True)
def _clear_of_a_minute_boundary(pg_server: Any) -> None:
    """The roll-up works on closed minutes of the database clock, so a test that rolls up
    twice, or compares with the current minute, would see a new minute close halfway if it
    started in a minute's last seconds: start it in the next minute instead."""
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT extract(second FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    if row[0] > 60.0 - MINUTE_MARGIN:
        time.sleep(60.0 - row[0] + 0.2)


def _roll_up(dsn: str) -> int:
    op = STORE.roll_up_ended()
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(op.sql, op.params).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def _viewer(dsn: str) -> Iterator[str]:
    """A login role granted only USAGE on the schema and SELECT on its tables (as they are
    now), dropped afterwards; yields its name."""
    viewer = f"pgqueue_viewer_{uuid.uuid4().hex[:8]}"
    sql(dsn, f"CREATE ROLE {viewer} LOGIN")
    try:
        sql(dsn, f"GRANT USAGE ON SCHEMA pgqueue TO {viewer}")
        sql(dsn, f"GRANT SELECT ON ALL TABLES IN SCHEMA pgqueue TO {viewer}")
        yield viewer
    finally:
        sql(dsn, f"DROP OWNED BY {viewer}")
        sql(dsn, f"DROP ROLE {viewer}")


def _through(dsn: str) -> Any:
    return sql(dsn, "SELECT through FROM pgqueue.ended_rollup")[0]["through"]


@pytest.mark.parametrize("span", ["hour", "day", "week"])
def test_charts_are_the_same_before_and_after_a_roll_up(dsn: str, span: str) -> None:
    sql(dsn, HISTORY)
    _finished(dsn, 1)  # in the current minute: never summed up yet
    _assert_chart_is_true(dsn, span)
    assert _roll_up(dsn) > 100
    assert (
        _through(dsn)
        == sql(dsn, "SELECT date_trunc('minute', now()) - interval '1 minute' AS m")[0]["m"]
    )
    _assert_chart_is_true(dsn, span)  # now from the summary and the tasks since `through`
    summed = sql(dsn, "SELECT sum(finished) AS f, sum(failed) AS x FROM pgqueue.ended_per_minute")
    assert summed[0]["f"] >= 5990 and summed[0]["x"] >= 595


def test_after_a_roll_up_a_chart_reads_only_the_tasks_finished_since(dsn: str) -> None:
    """The week's chart of 6,000 tasks reads them all from ``task_ended`` before a roll-up,
    and only the few finished since ``through`` after it (the rest from the summary)."""
    sql(dsn, HISTORY)
    sql(dsn, "VACUUM ANALYZE pgqueue.task")

    def task_rows_read() -> int:
        op = STORE.queue_activity(step=SPANS["week"] / 60, buckets=60)
        with transaction(dsn) as conn:
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + op.sql, op.params)
            nodes = plan_nodes(plan.fetchone()["QUERY PLAN"][0]["Plan"])
        scans = [n for n in nodes if n.get("Relation Name") == "task"]
        assert [n.get("Index Name") for n in scans] == ["task_ended"], scans
        return int(scans[0]["Actual Rows"])

    assert task_rows_read() == 6000
    _roll_up(dsn)
    _finished(dsn, 0)
    # the new one, and those of the last two minutes (one every 30 s), never summed up yet
    assert task_rows_read() <= 5


def _drawn_less_true(dsn: str, span: str) -> int:
    """The tasks the chart draws minus those the task table holds, over the chart's range."""
    rows, truth = _chart_and_truth(dsn, span)
    return sum(r["finished"] for r in rows) - sum(f for f, _ in truth.values())


def test_a_late_finish_within_the_margin_is_counted_at_the_next_roll_up(dsn: str) -> None:
    sql(dsn, HISTORY)
    _roll_up(dsn)
    # Committed now, ended 150 s ago (its transaction started then): before `through`.
    _finished(dsn, 150, status=2)
    assert _drawn_less_true(dsn, "day") == -1  # the chart misses it until the next roll-up
    assert _roll_up(dsn) == 0  # nothing before another minute has closed
    _a_minute_passes(dsn)
    assert _roll_up(dsn) > 0
    _assert_chart_is_true(dsn, "day")


def _a_minute_passes(dsn: str) -> None:
    """As if the last roll-up had happened a minute earlier."""
    sql(dsn, "UPDATE pgqueue.ended_rollup SET through = through - interval '1 minute'")


def test_minutes_past_the_margin_are_a_record_and_eight_days_are_kept(dsn: str) -> None:
    sql(dsn, HISTORY)
    _roll_up(dsn)
    # Pruned after the roll-up: tasks that ended 10 to 20 hours ago stay in the day's chart.
    pruned = sql(
        dsn,
        "WITH gone AS (DELETE FROM pgqueue.task WHERE time_ended < now() - interval '10 hours' "
        "AND time_ended > now() - interval '20 hours' RETURNING 1) SELECT count(*) AS n FROM gone",
    )[0]["n"]
    assert pruned > 1000
    assert _drawn_less_true(dsn, "day") == pruned
    sql(
        dsn,
        "INSERT INTO pgqueue.ended_per_minute VALUES "
        "(date_trunc('minute', now()) - interval '9 days', 'q0', 5, 1)",
    )
    _a_minute_passes(dsn)
    assert _roll_up(dsn) > 0
    assert _drawn_less_true(dsn, "day") == pruned
    oldest = sql(dsn, "SELECT min(minute) AS m, now() - interval '8 days' AS keep "
                      "FROM pgqueue.ended_per_minute")[0]  # fmt: skip
    assert oldest["m"] >= oldest["keep"] - timedelta(minutes=1)


def test_a_roll_up_that_finds_another_running_does_nothing_at_once(dsn: str) -> None:
    sql(dsn, HISTORY)
    with transaction(dsn) as holder:
        holder.execute("SELECT * FROM pgqueue.ended_rollup FOR UPDATE")
        started = time.monotonic()
        assert _roll_up(dsn) == 0
        assert time.monotonic() - started < 5
        assert _through(dsn) is None
        assert not sql(dsn, "SELECT 1 FROM pgqueue.ended_per_minute")
    assert _roll_up(dsn) > 0


def test_the_dashboard_rolls_up_and_a_viewer_without_writes_keeps_the_charts(dsn: str) -> None:
    """``Operations.activity`` rolls up first; where the write is refused (a role granted
    only SELECT) it draws the chart from the task table as before."""
    sql(dsn, HISTORY)
    with _viewer(dsn) as viewer:
        with TaskBackend(make_conninfo(dsn, user=viewer)) as backend:
            rows = Operations(backend).activity("week")
        assert sum(r["finished"] for r in rows) == 6000
        assert _through(dsn) is None
    with TaskBackend(dsn) as backend:
        rows = Operations(backend).activity("week")
    assert sum(r["finished"] for r in rows) == 6000
    assert _through(dsn) is not None


def test_a_roll_up_cut_short_by_a_statement_timeout_leaves_the_chart_drawn(dsn: str) -> None:
    """A ``statement_timeout`` shorter than a roll-up (the first one sums up eight days; here a
    row lock holds it) ends the roll-up, not the chart, which counts from the task table."""
    sql(dsn, HISTORY)
    _roll_up(dsn)
    _a_minute_passes(dsn)
    through = _through(dsn)
    database = sql(dsn, "SELECT current_database() AS d")[0]["d"]
    with transaction(dsn) as holder:
        holder.execute(
            "SELECT 1 FROM pgqueue.ended_per_minute "
            "WHERE minute = date_trunc('minute', now()) - interval '3 minutes' FOR UPDATE"
        )
        sql(dsn, f"ALTER DATABASE {database} SET statement_timeout = '300ms'")
        try:
            with TaskBackend(dsn) as backend:
                ops = Operations(backend)
                assert ops.roll_up_ended() == 0
                rows = ops.activity("day")
        finally:
            sql(dsn, f"ALTER DATABASE {database} RESET statement_timeout")
    assert sum(r["finished"] for r in rows) > 2000
    assert _through(dsn) == through
    _assert_chart_is_true(dsn, "day")


def test_a_viewer_granted_before_the_upgrade_reads_the_summary(empty_dsn: str) -> None:
    """Revision 0016 grants SELECT on its tables to the roles that may read the task table, so
    a dashboard's read-only role keeps its charts (and the roll-up is refused, not failed)."""
    migrate(empty_dsn, "pgqueue")
    cfg = alembic_config("pgqueue")
    with _sqlalchemy_connection(empty_dsn) as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "pgqueue_0015_ended_covering")
    with _viewer(empty_dsn) as viewer:
        migrate(empty_dsn, "pgqueue")
        sql(empty_dsn, HISTORY)
        with TaskBackend(make_conninfo(empty_dsn, user=viewer)) as backend:
            rows = Operations(backend).activity("week")
        assert sum(r["finished"] for r in rows) == 6000
        assert _through(empty_dsn) is None

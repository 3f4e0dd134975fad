"""The task list latest queued first (issue 18): the same pages as sorting the whole table,
read from the tasks changed lately (``QUEUED_LATEST``) instead of sorting every row."""

from __future__ import annotations

from typing import Any

import pytest

from pgqueue._store import Store
from pgqueue._store.operator import TASK_ORDERS
from tests.support.fixtures import sql
from tests.support.ops_data import transaction
from tests.support.plans import plan_nodes

STORE = Store("pgqueue")

#: 4,000 finished tasks queued one every 10 s over the last 11 hours, each waiting up to an
#: hour (so queue order and end order differ), one in ten FAILURE; ties in queue time every
#: 500th; and 300 live ones (QUEUED, RETRY, STARTED) queued among them.
ROWS = """
INSERT INTO pgqueue.task (name, queue, status, time_queued, time_started, time_ended, worker)
SELECT 'job' || (i % 3), 'q' || (i % 2), CASE WHEN i % 10 = 0 THEN 2 ELSE 1 END,
       q, q + (i * 37 % 3600) * interval '1 second', q + (i * 37 % 3600 + 1) * interval '1 second',
       'w'
FROM generate_series(1, 4000) AS i,
     LATERAL (SELECT now() - (i - i % 500 / 499) * interval '10 seconds' AS q) queued;
INSERT INTO pgqueue.task (name, queue, status, time_queued, time_started, worker, attempts)
SELECT 'job' || (i % 3), 'q' || (i % 2), CASE i % 3 WHEN 0 THEN 6 WHEN 1 THEN 4 ELSE 5 END,
       now() - i * interval '123 seconds',
       CASE WHEN i % 3 > 0 THEN now() - i * interval '100 seconds' END,
       CASE WHEN i % 3 > 0 THEN 'w' END, i % 3
FROM generate_series(1, 300) AS i
"""


def _page(dsn: str, order: str, states: list[str] | None, offset: int) -> list[str]:
    op = STORE.list_tasks(
        states=states, jobs=None, queues=None, since=None, limit=50, offset=offset, order=order
    )
    with transaction(dsn) as conn:
        return [r["id"] for r in conn.execute(op.sql, op.params).fetchall()]


def _sorted(dsn: str, order: str, states: list[str] | None, offset: int) -> list[str]:
    where = "WHERE state = ANY(%(states)s)" if states else ""
    found = sql(
        dsn,
        f"SELECT id::text AS id FROM pgqueue.task_state {where} "
        f"ORDER BY {TASK_ORDERS[order]} LIMIT 50 OFFSET %(offset)s",
        {"states": states, "offset": offset},
    )
    return [r["id"] for r in found]


@pytest.mark.parametrize("order", ["queued", "queued_asc"])
def test_pages_in_queue_order_are_those_of_sorting_every_row(dsn: str, order: str) -> None:
    for statement in ROWS.split(";\n"):
        sql(dsn, statement)
    sql(dsn, "ANALYZE pgqueue.task")
    filters = (None, ["SUCCESS", "FAILURE"], ["FAILURE", "QUEUED"], ["STARTED"], ["REVOKED"])
    for states in filters:
        for offset in (0, 50, 950, 4250):
            expected = _sorted(dsn, order, states, offset)
            assert _page(dsn, order, states, offset) == expected, (states, offset)


def test_a_task_queued_long_ago_and_ended_last_keeps_its_place(dsn: str) -> None:
    """The sample's long-waiting tasks only widen the range read: the page stays exact."""
    for statement in ROWS.split(";\n"):
        sql(dsn, statement)
    sql(
        dsn,
        "INSERT INTO pgqueue.task (name, status, time_queued, time_started, time_ended) "
        "SELECT 'late', 1, now() - interval '2 days' - i * interval '1 minute', now(), now() "
        "FROM generate_series(1, 3000) AS i",
    )
    for offset in (0, 2000, 7000):
        assert _page(dsn, "queued", None, offset) == _sorted(dsn, "queued", None, offset)


def _plan(dsn: str, order: str) -> list[dict[str, Any]]:
    op = STORE.list_tasks(
        states=None, jobs=None, queues=None, since=None, limit=50, offset=0, order=order
    )
    with transaction(dsn) as conn:
        explained = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + op.sql, op.params)
        return list(plan_nodes(explained.fetchone()["QUERY PLAN"][0]["Plan"]))


def test_a_page_latest_queued_first_reads_the_tasks_changed_lately(dsn: str) -> None:
    """The first page reads a sample and a page's worth of tasks through ``task_changed``,
    not the 40,000 of the table (sorting every row is what made it slow)."""
    sql(
        dsn,
        "INSERT INTO pgqueue.task (name, status, time_queued, time_started, time_ended) "
        "SELECT 'a', 1, now() - i * interval '1 second', now() - i * interval '1 second', "
        "now() - i * interval '1 second' + interval '5 ms' FROM generate_series(1, 40000) i",
    )
    sql(dsn, "VACUUM ANALYZE pgqueue.task")
    nodes = _plan(dsn, "queued")
    scans = [n for n in nodes if n.get("Relation Name") == "task" and n["Actual Loops"]]
    # The plan holds the whole-table sort too, never run: the sample covers the page.
    assert [n.get("Index Name") for n in scans] == ["task_changed"], scans
    assert scans[0]["Actual Rows"] <= 1001, scans  # the sample, and one row to see it end

"""The index the operations guide offers for searching finished tasks' arguments
(docs/guides/operations.md, section history-search; issue 18): the task list and its count
find the same tasks with it and without it, and with it they read the finished ones through it
instead of the whole table."""

from __future__ import annotations

import re
from typing import Any

from pgqueue._store import Store
from tests.support.fixtures import ROOT, sql
from tests.support.ops_data import transaction
from tests.support.plans import plan_nodes

STORE = Store("pgqueue")

ROWS = (
    "INSERT INTO pgqueue.task (name, status, time_queued, time_started, time_ended, kwargs) "
    "SELECT 'a', CASE WHEN i % 9 = 0 THEN 2 ELSE 1 END, now() - i * interval '1 s', "
    "now() - i * interval '1 s', now() - i * interval '1 s', "
    "jsonb_build_object('user', i % 500, 'n', i) FROM generate_series(1, 20000) AS i",
    "INSERT INTO pgqueue.task (name, status, time_queued, kwargs) "
    "SELECT 'a', 6, now() - i * interval '7 s', jsonb_build_object('user', i % 50, 'n', i) "
    "FROM generate_series(1, 300) AS i",
)


def guide_index() -> str:
    """The guide's ``CREATE INDEX`` statement, as written."""
    page = (ROOT / "docs" / "guides" / "operations.md").read_text()
    section = page.split("<!-- section: history-search")[1].split("<!-- /section")[0]
    (block,) = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
    return block


def _found(dsn: str, args: str, states: list[str] | None) -> tuple[list[str], int, list[Any]]:
    page = STORE.list_tasks(states=states, jobs=None, queues=None, since=None, limit=50, args=args)
    count = STORE.count_tasks(
        states=states, jobs=None, queues=None, since=None, args=args, cap=10_001
    )
    with transaction(dsn) as conn:
        ids = [r["id"] for r in conn.execute(page.sql, page.params).fetchall()]
        counted = conn.execute(count.sql, count.params).fetchone()["n"]
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + page.sql, page.params)
        nodes = list(plan_nodes(plan.fetchone()["QUERY PLAN"][0]["Plan"]))
    return ids, counted, nodes


def _truth(dsn: str, args: str, states: list[str] | None) -> tuple[list[str], int]:
    where = "kwargs @> %(args)s::jsonb" + (" AND state = ANY(%(states)s)" if states else "")
    rows = sql(
        dsn,
        f"SELECT id::text AS id FROM pgqueue.task_state WHERE {where} "
        "ORDER BY COALESCE(time_ended, time_started, time_queued) DESC, id::text",
        {"args": args, "states": states},
    )
    return [r["id"] for r in rows[:50]], len(rows)


def test_the_guides_index_finds_the_same_tasks_and_reads_no_more_than_them(dsn: str) -> None:
    for statement in ROWS:
        sql(dsn, statement)
    sql(dsn, "VACUUM ANALYZE pgqueue.task")
    searches = [('{"user": 7}', None), ('{"user": 7}', ["FAILURE", "QUEUED"]), ('{"n": 5}', None)]
    before = {}
    for args, states in searches:
        ids, counted, _ = _found(dsn, args, states)
        assert (ids, counted) == _truth(dsn, args, states), (args, states)
        before[args, str(states)] = (ids, counted)
    sql(dsn, guide_index())  # CONCURRENTLY: outside a transaction, as the guide runs it
    sql(dsn, "ANALYZE pgqueue.task")
    for args, states in searches:
        ids, counted, nodes = _found(dsn, args, states)
        assert (ids, counted) == before[args, str(states)], (args, states)
        used = [n for n in nodes if n.get("Index Name") == "task_ended_kwargs"]
        assert used, nodes
        tasks_read = sum(int(n["Actual Rows"]) for n in nodes if n.get("Relation Name") == "task")
        assert tasks_read <= 400, nodes  # the matches and the 300 live tasks, not 20,000

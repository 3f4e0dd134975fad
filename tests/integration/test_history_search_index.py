"""The indexes the operations guide offers for searching finished tasks' arguments and sorting
them oldest queued first (docs/guides/operations.md, section history-search; issue 18): the
task list and its count find the same tasks with them and without them, and with them they
read the finished ones through them instead of the whole table."""

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


def guide_indexes() -> list[str]:
    """The guide's ``CREATE INDEX`` statements, as written."""
    page = (ROOT / "docs" / "guides" / "operations.md").read_text()
    section = page.split("<!-- section: history-search")[1].split("<!-- /section")[0]
    (block,) = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
    return [statement for statement in block.split(";") if statement.strip()]


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
    for statement in guide_indexes():  # CONCURRENTLY: one at a time, outside a transaction
        sql(dsn, statement)
    sql(dsn, "ANALYZE pgqueue.task")
    for args, states in searches:
        ids, counted, nodes = _found(dsn, args, states)
        assert (ids, counted) == before[args, str(states)], (args, states)
        used = [n for n in nodes if n.get("Index Name") == "task_ended_kwargs"]
        assert used, nodes
        tasks_read = sum(int(n["Actual Rows"]) for n in nodes if n.get("Relation Name") == "task")
        assert tasks_read <= 400, nodes  # the matches and the 300 live tasks, not 20,000


def _oldest(dsn: str, offset: int) -> tuple[list[str], list[Any]]:
    op = STORE.list_tasks(
        states=None, jobs=None, queues=None, since=None, limit=50, offset=offset,
        order="queued_asc",
    )  # fmt: skip
    with transaction(dsn) as conn:
        ids = [r["id"] for r in conn.execute(op.sql, op.params).fetchall()]
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + op.sql, op.params)
        return ids, list(plan_nodes(plan.fetchone()["QUERY PLAN"][0]["Plan"]))


def test_oldest_queued_first_is_the_same_page_and_reads_a_page_with_the_index(dsn: str) -> None:
    for statement in ROWS:
        sql(dsn, statement)
    sql(dsn, "UPDATE pgqueue.task SET time_queued = now() - interval '1 day' WHERE status = 6")
    sql(dsn, "VACUUM ANALYZE pgqueue.task")
    truth = [
        r["id"]
        for r in sql(
            dsn, "SELECT id::text AS id FROM pgqueue.task_state ORDER BY time_queued, id::text"
        )
    ]
    before = {offset: _oldest(dsn, offset)[0] for offset in (0, 250, 19_980)}
    for offset, ids in before.items():
        assert ids == truth[offset : offset + 50], offset
    for statement in guide_indexes():
        sql(dsn, statement)
    sql(dsn, "ANALYZE pgqueue.task")
    for offset, ids in before.items():
        found, nodes = _oldest(dsn, offset)
        assert found == ids, offset
        finished = [n for n in nodes if n.get("Index Name") == "task_ended_queued"]
        assert finished, nodes
        assert int(finished[0]["Actual Rows"]) <= offset + 51, nodes

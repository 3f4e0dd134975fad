"""The store's statements, without a database: each operation binds exactly the parameters
its statement names, and each statement is rendered once per store, for its schema."""

from __future__ import annotations

import inspect

import pytest
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from pgqueue._store import Store
from pgqueue._store._op import PARAM, compact
from tests.support.store_ops import every_op


def test_every_operation_is_covered() -> None:
    """A new operation of the store must be added to :func:`every_op` (and so checked)."""
    public = {
        name
        for name, member in inspect.getmembers(Store, inspect.isfunction)
        if not name.startswith("_")
    }
    assert public == set(every_op(Store("pgqueue")))


@pytest.mark.parametrize("name", sorted(every_op(Store("pgqueue"))))
def test_statement_binds_exactly_its_parameters(name: str) -> None:
    """Each statement, rendered for a schema, names exactly the parameters its operation
    binds: a misspelled name on either side fails here, not at run time."""
    op = every_op(Store('my "schema'))[name]
    assert set(PARAM.findall(op.sql)) == set(op.params), name
    assert "{s}" not in op.sql and "{{" not in op.sql


def test_the_live_task_list_binds_what_the_whole_list_binds() -> None:
    """The task list and its count have a second statement for live states only."""
    s = Store('my "schema')
    filters = {"jobs": None, "queues": None, "since": None, "args": None}
    for states in (["STARTED"], ["QUEUED", "RETRY"]):
        for op in (
            s.list_tasks(states=states, limit=1, offset=0, **filters),
            s.count_tasks(states=states, cap=1, **filters),
        ):
            assert "OFFSET 0) AS live" in op.sql
            assert set(PARAM.findall(op.sql)) == set(op.params)
            assert "{s}" not in op.sql and "{source}" not in op.sql


def test_statements_are_rendered_for_the_schema_once() -> None:
    store = Store('my "schema')
    first = every_op(store)
    again = every_op(store)
    for name, op in first.items():
        assert op.sql is again[name].sql, name  # the same text: psycopg prepares it once
        if name not in (
            "schedule_now",
            "notify_queue_usage",
            "heartbeat_lock_timeout",
            "server_role",
        ):
            # they read no table
            assert '"my ""schema".' in op.sql, name
    assert '"pgqueue".' in every_op(Store("pgqueue"))["claim_tasks"].sql


def test_compact_drops_comments_and_blanks_but_never_inside_quotes() -> None:
    """What psycopg is sent: one space for each run of white space or comment, the quoted
    strings and identifiers as written (a ``--`` or two spaces inside them stay)."""
    written = """
    SELECT 'a -- b''  c' AS "x  -- y",  1 - -2   -- the comment
           , format('%%s  %%s', 1, 2) -- another
    FROM t\tWHERE a = '--' AND b <> 'it''s'
    """
    assert compact(written) == (
        "SELECT 'a -- b''  c' AS \"x  -- y\", 1 - -2 , format('%%s  %%s', 1, 2) "
        "FROM t WHERE a = '--' AND b <> 'it''s'"
    )
    for unbalanced in ("SELECT 'open", 'SELECT "open', "SELECT 'a' || 'b"):
        with pytest.raises(ValueError, match="unbalanced quote"):
            compact(unbalanced)


def test_the_hot_statements_fit_psycopgs_statement_cache() -> None:
    """psycopg converts a statement longer than ``MAX_CACHED_STATEMENT_LENGTH`` (4,096)
    anew at every execution, a regular-expression pass in the worker's one Python process:
    the claim of a worker of several jobs, as written with its comments (4,647 characters),
    cost the in-process drain a fifth of its rate. Every statement a worker or an enqueue
    runs per task, compacted, fits (the flow-controlled claims, run only when a limited task
    is a candidate, do not yet)."""
    s = Store('my "schema')
    for jobs in (["add", "sleep", "record", "tick"], ["add"]):
        op = s.claim_unlimited_tasks(queues=["a", "b"], jobs=jobs, limit=20, worker="w")
        assert len(op.sql.encode()) <= MAX_CACHED_STATEMENT_LENGTH, len(op.sql)
    for name, op in every_op(s).items():
        if name != "claim_tasks":
            assert len(op.sql.encode()) <= MAX_CACHED_STATEMENT_LENGTH, (name, len(op.sql))

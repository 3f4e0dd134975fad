"""The statements the store sends, compacted (comments dropped, white space made one space),
are the statements as written: PostgreSQL parses each to the same query (its query
identifier, computed from the parse tree; the string constants, which it leaves out, are
kept as written by construction and checked in ``tests/unit/test_store.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from pgqueue._db import connect
from pgqueue._store import Store
from pgqueue._store._op import native
from tests.support.store_ops import every_op


def _query_id(conn: Any, sql: str) -> int:
    """The query identifier of ``sql`` in the form ``Op.run`` sends (``$n`` parameters), from
    ``EXPLAIN (GENERIC_PLAN)``, which plans a statement without values for its parameters."""
    query, _ = native(sql)
    row = conn.execute(f"EXPLAIN (VERBOSE, GENERIC_PLAN, FORMAT JSON) {query}").fetchone()
    return int(row["QUERY PLAN"][0]["Query Identifier"])


def _as_written() -> Store:
    """A store that sends its statements as written, comments and all."""
    store = Store("pgqueue")
    store._sql = lambda template: template.replace("{s}", store._quoted)  # type: ignore[method-assign]
    return store


def test_every_compacted_statement_is_the_statement_as_written(dsn: str) -> None:
    sent, written = every_op(Store("pgqueue")), every_op(_as_written())
    with connect(dsn) as conn:
        if conn.info.server_version < 160000:
            pytest.skip("EXPLAIN (GENERIC_PLAN) needs PostgreSQL 16")
        conn.execute("SET compute_query_id = on")
        differ = [
            name
            for name in sorted(sent)
            if _query_id(conn, sent[name].sql) != _query_id(conn, written[name].sql)
        ]
    assert not differ


def test_the_claim_as_written_has_comments_and_is_sent_without() -> None:
    """What the comparison above compares: the claim's text as written has its comments."""
    written = every_op(_as_written())["claim_tasks"].sql
    sent = every_op(Store("pgqueue"))["claim_tasks"].sql
    assert "--" in written and "--" not in sent and len(sent) < 0.85 * len(written)

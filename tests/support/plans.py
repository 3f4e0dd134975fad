"""The plan of a claim statement as the worker's claimer runs it.

The claimer prepares its statements on a connection set up by ``claim_session`` and keeps
one generic plan of each; :func:`explain_as_claimer` does the same (``PREPARE`` of the
statement in the form ``Op.run`` sends, :func:`pgqueue._store._op.native`), executes it
with ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` and rolls the execution back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from psycopg.sql import Literal

from pgqueue._store._op import native
from pgqueue.worker import claim_session


def explain_as_claimer(
    conn: Any, sql: str, params: Mapping[str, Any], *, runs: int = 1
) -> dict[str, Any]:
    """The explained execution (the top-level JSON object: ``Plan``, and ``JIT`` when the
    server compiled it) of ``sql`` with ``params``, prepared on ``conn`` (not in autocommit)
    after ``claim_session``; the last of ``runs`` executions, each rolled back (a claimer runs
    the same statement again and again: later runs skip the first one's catalog look-ups)."""
    claim_session(conn)
    conn.commit()  # the session's settings outlive the rollbacks below
    prepared, names = native(sql)
    conn.execute(f"PREPARE claim_plan AS {prepared}")
    args = ", ".join(Literal(params[name]).as_string(conn) for name in names)
    query = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim_plan({args})"
    for _ in range(runs):
        raw = conn.execute(query).fetchone()["QUERY PLAN"]
        conn.rollback()
    conn.execute("DEALLOCATE claim_plan")
    return dict((json.loads(raw) if isinstance(raw, str) else raw)[0])


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``node`` and every node under it (subplans and init plans included)."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)

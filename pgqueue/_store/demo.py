"""The SQL of ``pgqueue demo``: resetting its queue, its progress counts and its summary.

Every statement reads one queue (``queue``, the demo's own), so a demo run against a shared
database never touches other queues. The summary is plain SQL on the task table: an operator
can run the same queries with psql.
"""

from __future__ import annotations

from typing import Any, TypedDict

from ._op import Op, StoreBase, first, nothing, rows

#: A fresh start for the demo's queue: every task of it, in any state.
DEMO_RESET = "DELETE FROM {s}.task WHERE queue = %(queue)s"

#: What the progress bar shows.
DEMO_PROGRESS = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE status IN (1, 2, 3)) AS done,
       count(*) FILTER (WHERE status = 2) AS failed,
       count(*) FILTER (WHERE status = 5) AS running
FROM {s}.task
WHERE queue = %(queue)s
"""

#: Tasks per state, every state listed (zero included), in pulsar's order (QUEUED first).
DEMO_STATES = """
SELECT s.name AS state, count(t.id) AS tasks
FROM {s}.state s LEFT JOIN {s}.task t ON t.status = s.code AND t.queue = %(queue)s
GROUP BY s.code, s.name
ORDER BY s.code DESC
"""

#: Totals over the queue. Times are the database's: ``wall_seconds`` from the first task
#: queued to the last one ended, ``run_seconds`` from the first start to the last end.
DEMO_TOTALS = """
WITH q AS (SELECT * FROM {s}.task WHERE queue = %(queue)s),
     t AS (
    SELECT count(*) AS tasks,
           count(*) FILTER (WHERE status IN (1, 2, 3)) AS finished,
           coalesce(sum((result->>'lines')::bigint) FILTER (WHERE status = 1), 0) AS lines,
           coalesce(sum((result->>'bytes')::bigint) FILTER (WHERE status = 1), 0) AS bytes,
           coalesce(sum(jsonb_array_length(result->'definitions')) FILTER (WHERE status = 1), 0)
               AS definitions,
           count(DISTINCT worker) AS workers,
           extract(epoch FROM max(time_ended) - min(time_queued))::float8 AS wall_seconds,
           extract(epoch FROM max(time_ended) - min(time_started))::float8 AS run_seconds
    FROM q
)
SELECT t.*, t.finished / nullif(t.run_seconds, 0) AS files_per_second FROM t
"""

#: Tasks run by each worker process (shows that the run was spread over processes).
DEMO_WORKERS = """
SELECT worker, count(*) AS tasks
FROM {s}.task
WHERE queue = %(queue)s AND worker IS NOT NULL
GROUP BY worker
ORDER BY tasks DESC, worker
"""

#: The longest files that were read, by lines.
DEMO_LARGEST = """
SELECT kwargs->>'path' AS path,
       (result->>'lines')::bigint AS lines,
       (result->>'bytes')::bigint AS bytes,
       jsonb_array_length(result->'definitions') AS definitions
FROM {s}.task
WHERE queue = %(queue)s AND status = 1
ORDER BY lines DESC, path
LIMIT %(limit)s
"""

#: The tasks that did not succeed (FAILURE or REVOKED) and why.
DEMO_FAILURES = """
SELECT t.kwargs->>'path' AS path, s.name AS state, t.error
FROM {s}.task t JOIN {s}.state s ON s.code = t.status
WHERE t.queue = %(queue)s AND t.status IN (2, 3)
ORDER BY path
"""


class Progress(TypedDict):
    """Task counts of the demo's queue."""

    total: int
    done: int
    failed: int
    running: int


def _counts(key: str) -> Any:
    def decode(found: list[Any], count: int) -> dict[str, int]:
        return {row[key]: row["tasks"] for row in found}

    return decode


_by_state = _counts("state")
_by_worker = _counts("worker")


class DemoOps(StoreBase):
    """The demo's statements (see the module docstring)."""

    def demo_reset(self, *, queue: str) -> Op[None]:
        """Delete every task of ``queue``."""
        return Op(self._sql(DEMO_RESET), {"queue": queue}, nothing)

    def demo_progress(self, *, queue: str) -> Op[Progress]:
        """What the progress bar shows (an aggregate: always one row)."""
        return Op(self._sql(DEMO_PROGRESS), {"queue": queue}, first)

    def demo_states(self, *, queue: str) -> Op[dict[str, int]]:
        """Tasks per state name, every state listed, QUEUED first."""
        return Op(self._sql(DEMO_STATES), {"queue": queue}, _by_state)

    def demo_totals(self, *, queue: str) -> Op[dict[str, Any]]:
        """Totals over the queue (see :data:`DEMO_TOTALS`; one row)."""
        return Op(self._sql(DEMO_TOTALS), {"queue": queue}, first)

    def demo_workers(self, *, queue: str) -> Op[dict[str, int]]:
        """Tasks run per worker id, most first."""
        return Op(self._sql(DEMO_WORKERS), {"queue": queue}, _by_worker)

    def demo_largest(self, *, queue: str, limit: int) -> Op[list[dict[str, Any]]]:
        """The ``limit`` longest files read: ``{path, lines, bytes, definitions}``."""
        return Op(self._sql(DEMO_LARGEST), {"queue": queue, "limit": limit}, rows)

    def demo_failures(self, *, queue: str) -> Op[list[dict[str, Any]]]:
        """FAILURE and REVOKED tasks: ``{path, state, error}``, by path."""
        return Op(self._sql(DEMO_FAILURES), {"queue": queue}, rows)

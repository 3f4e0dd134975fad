"""The SQL of ``pgqueue demo``: resetting its queue, its progress counts and its summary.

Same conventions as :mod:`pgqueue._sql`: ``%(name)s`` parameters bound by the driver, ``{s}``
for the quoted schema. Every statement reads one queue (``%(queue)s``, the demo's own), so a
demo run against a shared database never touches other queues. The summary is plain SQL on
the task table: an operator can run the same queries with psql.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._db import quote_ident

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


@dataclass(frozen=True)
class DemoStatements:
    """The statements above rendered for ``schema`` (its quoted identifier filled in)."""

    reset: str
    progress: str
    states: str
    totals: str
    workers: str
    largest: str
    failures: str

    @classmethod
    def for_schema(cls, schema: str) -> DemoStatements:
        """Render every statement for ``schema``."""
        quoted = quote_ident(schema)
        templates = (
            DEMO_RESET,
            DEMO_PROGRESS,
            DEMO_STATES,
            DEMO_TOTALS,
            DEMO_WORKERS,
            DEMO_LARGEST,
            DEMO_FAILURES,
        )
        return cls(*(template.replace("{s}", quoted) for template in templates))

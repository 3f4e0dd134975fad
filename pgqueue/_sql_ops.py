"""The SQL of operators' tools (``pgqueue status/list/show/...``, the dashboard, the metrics).

Read queries go through the views of revision ``pgqueue_0004_operations`` (the stable SQL
surface) rather than the tables, so what the tools show is what an operator's own SQL shows.
Same conventions as :mod:`pgqueue._sql`: ``%(name)s`` parameters, ``{s}`` for the schema.
"""

from __future__ import annotations

from . import _sql

QUEUE_STATS = "SELECT * FROM {s}.queue_stats ORDER BY queue, name"

#: Last minute before last hour (the period names sort that way backwards).
QUEUE_THROUGHPUT = "SELECT * FROM {s}.queue_throughput ORDER BY queue, name, period DESC"

QUEUE_TIMELINE = "SELECT * FROM {s}.queue_timeline ORDER BY queue, minute"

#: Depth of each queue by state, for the metrics: only live states, read from the partial
#: indexes, so a scrape stays cheap however long the history is.
QUEUE_DEPTH = """
SELECT t.queue, s.name AS state, count(*) AS n
FROM {s}.task t JOIN {s}.state s ON s.code = t.status
WHERE t.status IN (4, 5, 6)
GROUP BY t.queue, s.name
"""

#: How full PostgreSQL's NOTIFY queue is (0..1): shown by ``pgqueue status``, the dashboard and
#: the metrics (F27; see revision pgqueue_0005_contract).
NOTIFY_QUEUE_USAGE = "SELECT pg_notification_queue_usage()::float8 AS usage"

#: Live workers, plus stopped and lost ones seen within ``recent`` seconds (all when NULL).
WORKERS = """
SELECT * FROM {s}.worker_status
WHERE state = 'alive' OR %(recent)s::float8 IS NULL
   OR heartbeat_at > now() - %(recent)s::float8 * interval '1 second'
ORDER BY state = 'alive' DESC, started_at DESC
"""

STUCK_TASKS = "SELECT * FROM {s}.stuck_tasks ORDER BY since"

#: Tasks by filters (each NULL means "any"), most recent activity first. ``since`` is seconds
#: before now() of the last change (end, else start, else queue time).
LIST_TASKS = """
SELECT id::text AS id, name, queue, state, priority, attempts, worker, time_queued, run_at,
       time_started, time_ended, wait_seconds, run_seconds, error
FROM {s}.task_state
WHERE (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
  AND (%(jobs)s::text[] IS NULL OR name = ANY(%(jobs)s::text[]))
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND (%(since)s::float8 IS NULL
       OR COALESCE(time_ended, time_started, time_queued)
          >= now() - %(since)s::float8 * interval '1 second')
ORDER BY COALESCE(time_ended, time_started, time_queued) DESC, id
LIMIT %(limit)s
"""


def _bounded(column: str, *, json: bool) -> str:
    """SQL for ``column`` of ``task_state t`` cut to at most ``%(preview)s`` characters (NULL:
    all of it) followed by its full length; a JSON column is measured as text (``v``, see
    :data:`TASK_DETAIL`) and its preview comes back as a JSON string."""
    text = f"v.{column}" if json else f"t.{column}"
    preview = (
        f"left({text}, %(preview)s::integer) || '... (' || length({text}) || ' characters in all)'"
    )
    return (
        f"CASE WHEN %(preview)s::integer IS NOT NULL AND length({text}) > %(preview)s::integer "
        f"THEN {f'to_jsonb({preview})' if json else preview} ELSE t.{column} END AS {column}"
    )


#: One task, its long values cut to a preview in SQL (``pgqueue show`` of a task with 46 MB of
#: kwargs ran 90 s at full CPU: issue 12); ``preview`` NULL returns everything.
TASK_DETAIL = f"""
SELECT id::text AS id, name, queue, state, status, priority, attempts, max_retries, worker,
       lock_id, time_queued, run_at, time_started, time_ended, expiry, wait_seconds,
       run_seconds, overdue, {_bounded("kwargs", json=True)},
       {_bounded("meta_params", json=True)}, {_bounded("result", json=True)},
       {_bounded("error", json=False)}, {_bounded("traceback", json=False)},
       revoke_requested_at
FROM {{s}}.task_state t,
     LATERAL (SELECT t.kwargs::text AS kwargs, t.meta_params::text AS meta_params,
                     t.result::text AS result) v
WHERE t.id = %(id)s::uuid
"""

#: Queue a finished FAILURE or REVOKED task again, as if new: QUEUED, due now, queued now.
#: ``attempts`` keeps counting (writes of executions are fenced on it); the last error and
#: traceback stay until the next run ends. Raises a unique violation when another live task
#: holds the lock_id.
RETRY_TASK = """
UPDATE {s}.task
SET status = 6, time_queued = now(), run_at = now(), time_started = NULL, time_ended = NULL,
    result = NULL, worker = NULL, revoke_requested_at = NULL
WHERE id = %(id)s::uuid AND status IN (2, 3)
RETURNING id::text AS id
"""

#: The live task holding the lock_id of task ``id``, if any.
LOCK_HOLDER = """
SELECT h.id::text AS id, s.name AS state
FROM {s}.task t
JOIN {s}.task h ON h.lock_id = t.lock_id AND h.status IN (4, 5, 6) AND h.id <> t.id
JOIN {s}.state s ON s.code = h.status
WHERE t.id = %(id)s::uuid
"""

#: How many tasks :data:`pgqueue._sql.PRUNE_TASKS` would delete with the same parameters.
COUNT_PRUNABLE = """
SELECT count(*) AS n FROM {s}.task
WHERE status = ANY(%(states)s::smallint[]) AND status IN (1, 2, 3)
  AND time_ended < now() - %(older_than)s::float8 * interval '1 second'
"""

#: Queues that have live tasks or running workers (for following their events).
QUEUE_NAMES = """
SELECT DISTINCT queue FROM {s}.task WHERE status IN (4, 5, 6)
UNION
SELECT unnest(queues) FROM {s}.worker WHERE stopped_at IS NULL
"""

SCHEDULES = "SELECT * FROM {s}.schedule_state ORDER BY name"


class OpsStatements(_sql.Statements):
    """:class:`pgqueue._sql.Statements` plus the statements of this module."""

    sources = (globals(), *_sql.Statements.sources)

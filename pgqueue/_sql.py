"""Every SQL statement pgqueue runs at run time, in one place, named by what it does.

DDL lives only in the Alembic revisions. Statements use ``%(name)s`` parameters (bound by the
driver, never formatted in) and cast each one explicitly, so they run unchanged on psycopg,
psycopg2 or SQLAlchemy's ``exec_driver_sql``. ``{s}`` stands for the quoted schema and is
filled in once by :class:`Statements`.
"""

from __future__ import annotations

from ._db import quote_ident
from .task import TASK_COLUMNS

_T = ", ".join(f"t.{c}" for c in TASK_COLUMNS)

#: lock_id of a non-overlapping task: sha256 over the job name and the canonical jsonb text
#: of its kwargs (jsonb sorts keys), so the same call always yields the same lock.
LOCK_ID = "encode(sha256(convert_to(%(name)s || ' ' || %(kwargs)s::jsonb::text, 'UTF8')), 'hex')"

QUEUE_TASK = f"""
INSERT INTO {{s}}.task AS t (name, queue, lock_id, priority, kwargs, meta_params,
                             run_at, expiry, max_retries)
VALUES (%(name)s, %(queue)s,
        CASE WHEN %(can_overlap)s::boolean THEN NULL ELSE {LOCK_ID} END,
        %(priority)s, %(kwargs)s::jsonb, %(meta_params)s::jsonb,
        COALESCE(%(run_at)s::timestamptz,
                 now() + %(countdown)s::float8 * interval '1 second',
                 now()),
        COALESCE(%(expiry_at)s::timestamptz, now() + %(expiry_in)s::float8 * interval '1 second'),
        %(max_retries)s)
ON CONFLICT (lock_id) WHERE status IN (4, 5, 6) DO NOTHING
RETURNING t.id::text AS id
"""

GET_TASKS = f"SELECT {_T} FROM {{s}}.task t WHERE t.id = ANY(%(ids)s::uuid[])"

#: Claim up to ``limit`` due tasks in priority then run_at order. A task past its expiry is
#: revoked here instead of started (pulsar's TaskTimeout at execution time).
CLAIM_TASKS = f"""
WITH picked AS (
    SELECT id, expiry IS NOT NULL AND expiry <= now() AS expired
    FROM {{s}}.task
    WHERE status IN (4, 6) AND queue = ANY(%(queues)s::text[]) AND run_at <= now()
      AND name = ANY(%(jobs)s::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {{s}}.task t
SET status = CASE WHEN picked.expired THEN 3 ELSE 5 END,
    time_started = CASE WHEN picked.expired THEN t.time_started ELSE now() END,
    time_ended = CASE WHEN picked.expired THEN now() END,
    error = CASE WHEN picked.expired THEN 'expired before it started' ELSE t.error END,
    worker = %(worker)s,
    attempts = t.attempts + CASE WHEN picked.expired THEN 0 ELSE 1 END
FROM picked
WHERE t.id = picked.id
RETURNING {_T}
"""

#: Write the outcome of several executions at once. Each write is fenced on the attempt it
#: belongs to and on STARTED, so a late or repeated finish changes nothing.
FINISH_TASKS = """
UPDATE {s}.task t
SET status = f.status,
    result = f.result,
    error = f.error,
    traceback = f.traceback,
    time_ended = CASE WHEN f.status IN (1, 2, 3) THEN now() END,
    run_at = CASE WHEN f.status = 4 THEN now() + f.delay * interval '1 second' ELSE t.run_at END
FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(statuses)s::smallint[],
            %(results)s::jsonb[], %(errors)s::text[], %(tracebacks)s::text[],
            %(delays)s::float8[])
     AS f(id, attempt, status, result, error, traceback, delay)
WHERE t.id = f.id AND t.attempts = f.attempt AND t.status = 5 AND t.worker = %(worker)s
RETURNING t.id::text AS id, t.time_ended
"""

#: The expiry sweep: revoke claimable tasks past their expiry, skipping rows a claim holds.
REVOKE_EXPIRED = """
UPDATE {s}.task t
SET status = 3, time_ended = now(), error = 'expired before it started'
WHERE t.id IN (
    SELECT id FROM {s}.task
    WHERE status IN (4, 6) AND expiry <= now() AND queue = ANY(%(queues)s::text[])
    ORDER BY expiry
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AND t.status IN (4, 6)
RETURNING t.id::text AS id
"""

FLUSH_QUEUE = """
DELETE FROM {s}.task WHERE queue = %(queue)s AND status IN (4, 6)
"""

REGISTER_WORKER = """
INSERT INTO {s}.worker (id, hostname, pid, queues, backlog, lease_seconds)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::text[], %(backlog)s, %(lease)s)
"""

HEARTBEAT_WORKER = """
UPDATE {s}.worker SET heartbeat_at = now() WHERE id = %(id)s AND stopped_at IS NULL
"""

STOP_WORKER = """
UPDATE {s}.worker SET stopped_at = now(), heartbeat_at = now() WHERE id = %(id)s
"""

NEXT_RUN_AT = """
SELECT extract(epoch FROM min(run_at) - now())::float8 AS seconds
FROM {s}.task
WHERE status IN (4, 6) AND queue = ANY(%(queues)s::text[]) AND run_at > now()
"""


class Statements:
    """The statements above with the schema filled in (a quoted identifier).

    ``Statements("pgqueue").claim_tasks`` is :data:`CLAIM_TASKS` rendered for that schema.
    """

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._quoted = quote_ident(schema)

    def __getattr__(self, name: str) -> str:
        template = globals().get(name.upper())
        if name.startswith("_") or not isinstance(template, str):
            raise AttributeError(name)
        rendered = template.replace("{s}", self._quoted)
        setattr(self, name, rendered)
        return rendered

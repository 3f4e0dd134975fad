"""Every SQL statement pgqueue runs at run time, in one place, named by what it does.

DDL lives only in the Alembic revisions. Statements use ``%(name)s`` parameters (bound by the
driver, never formatted in) and cast each one explicitly, so they run unchanged on psycopg,
psycopg2 or SQLAlchemy's ``exec_driver_sql``. ``{s}`` stands for the quoted schema and is
filled in once by :class:`Statements`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ._db import quote_ident
from .task import TASK_COLUMNS

_T = ", ".join(f"t.{c}" for c in TASK_COLUMNS)


def lock_id_sql(name: str, kwargs: str) -> str:
    """The lock_id expression for SQL expressions ``name`` (text) and ``kwargs`` (jsonb).

    sha256 over the job name, a space and the canonical jsonb text of the kwargs (jsonb sorts
    keys), so the same call always yields the same lock. The SQL function ``queue_task`` of
    revision pgqueue_0003_integration computes the same; a test keeps the two equal.
    """
    return f"encode(sha256(convert_to({name} || ' ' || {kwargs}::text, 'UTF8')), 'hex')"


#: lock_id of a non-overlapping task queued by :data:`QUEUE_TASK`.
LOCK_ID = lock_id_sql("%(name)s::text", "%(kwargs)s::jsonb")

QUEUE_TASK = f"""
INSERT INTO {{s}}.task AS t (name, queue, lock_id, priority, kwargs, meta_params,
                             run_at, expiry, max_retries)
VALUES (%(name)s::text, %(queue)s::text,
        CASE WHEN %(can_overlap)s::boolean THEN NULL ELSE {LOCK_ID} END,
        %(priority)s::integer, %(kwargs)s::jsonb, %(meta_params)s::jsonb,
        COALESCE(%(run_at)s::timestamptz,
                 now() + %(countdown)s::float8 * interval '1 second',
                 now()),
        COALESCE(%(expiry_at)s::timestamptz, now() + %(expiry_in)s::float8 * interval '1 second'),
        %(max_retries)s::integer)
ON CONFLICT (lock_id) WHERE status IN (4, 5, 6) DO NOTHING
RETURNING t.id::text AS id
"""

#: Queue many tasks in one statement from one JSON document: an array of objects with the
#: fields of :data:`QUEUE_TASK` (``kwargs`` and ``meta_params`` as JSON values, timestamps as
#: ISO 8601 text). Returns one row per input task, in input order, with ``id`` NULL where a
#: live task already held the lock_id (or an earlier task of the same batch did). Rows are
#: inserted in lock_id order, then input order: two batches sharing lock_ids take them in the
#: same order (no deadlock), and of two duplicates the first one given is inserted. ``input``
#: is materialized, so each row keeps one id.
QUEUE_TASKS = f"""
WITH input AS (
    SELECT gen_random_uuid() AS id,
           CASE WHEN i.can_overlap THEN NULL
                ELSE {lock_id_sql("i.name", "i.kwargs")} END AS lock_id,
           i.*
    FROM ROWS FROM (jsonb_to_recordset(%(tasks)s::jsonb) AS (
             name text, queue text, can_overlap boolean, priority integer, kwargs jsonb,
             meta_params jsonb, run_at timestamptz, countdown float8, expiry_at timestamptz,
             expiry_in float8, max_retries integer))
         WITH ORDINALITY AS i(name, queue, can_overlap, priority, kwargs, meta_params, run_at,
                              countdown, expiry_at, expiry_in, max_retries, ord)
), inserted AS (
    INSERT INTO {{s}}.task AS t (id, name, queue, lock_id, priority, kwargs, meta_params,
                                 run_at, expiry, max_retries)
    SELECT id, name, queue, lock_id, priority, kwargs, meta_params,
           COALESCE(run_at, now() + countdown * interval '1 second', now()),
           COALESCE(expiry_at, now() + expiry_in * interval '1 second'),
           max_retries
    FROM input
    ORDER BY lock_id NULLS FIRST, ord
    ON CONFLICT (lock_id) WHERE status IN (4, 5, 6) DO NOTHING
    RETURNING t.id
)
SELECT inserted.id::text AS id
FROM input LEFT JOIN inserted USING (id)
ORDER BY input.ord
"""

GET_TASKS = f"SELECT {_T} FROM {{s}}.task t WHERE t.id = ANY(%(ids)s::uuid[])"

#: A claimed row whose ``attempts`` cannot grow (integer column at its maximum).
_WORN_OUT = "t.attempts = 2147483647"

#: The task columns as a claim returns them: the id as text, not a uuid to convert back.
_T_CLAIMED = _T.replace("t.id, ", "t.id::text AS id, ", 1)

#: Claim up to ``limit`` due tasks in priority then run_at order. A task past its expiry is
#: revoked here instead of started (pulsar's TaskTimeout at execution time).
#: Each queue is read on its own (LATERAL) so the scan walks the partial index task_claimable
#: in claim order and stops after ``limit`` rows: the cost follows ``limit``, not the backlog
#: nor the history (``queue = ANY(...)`` made PostgreSQL read and sort the whole backlog).
#: With several queues up to ``limit`` rows per queue are locked for the statement; the rows
#: not picked are free again at its commit. The worker keeps one generic plan of it: the
#: redundant ``t.id = ANY(ARRAY(...))`` makes that plan read the picked rows by primary key
#: whatever ``limit`` is, where the join alone was planned as a scan of the whole table.
#: A task whose ``attempts`` is at the integer limit (written by hand: no run adds that many)
#: ends FAILURE here instead of started, so its ``attempts + 1`` never fails the claim of
#: every other task (F24).
CLAIM_TASKS = f"""
WITH picked AS (
    SELECT c.id, c.expired
    FROM unnest(%(queues)s::text[]) AS q(queue)
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at, expiry IS NOT NULL AND expiry <= now() AS expired
        FROM {{s}}.task
        WHERE queue = q.queue AND status IN (4, 6) AND run_at <= now()
          AND name = ANY(%(jobs)s::text[])
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) c
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s
)
UPDATE {{s}}.task t
SET status = CASE WHEN picked.expired THEN 3 WHEN {_WORN_OUT} THEN 2 ELSE 5 END,
    time_started = CASE WHEN picked.expired OR {_WORN_OUT} THEN t.time_started ELSE now() END,
    time_ended = CASE WHEN picked.expired OR {_WORN_OUT} THEN now() END,
    error = CASE WHEN picked.expired THEN 'expired before it started'
                 WHEN {_WORN_OUT} THEN 'attempts reached its limit (2147483647): not started'
                 ELSE t.error END,
    worker = %(worker)s,
    attempts = t.attempts + CASE WHEN picked.expired OR {_WORN_OUT} THEN 0 ELSE 1 END
FROM picked
WHERE t.id = picked.id AND t.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING {_T_CLAIMED}
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

#: Retention: delete up to ``limit`` finished tasks (``states``, a subset of SUCCESS, FAILURE,
#: REVOKED) that ended more than ``older_than`` seconds ago, oldest first, skipping rows
#: others hold. Reads the partial index task_time_ended; run it in a loop until it deletes
#: fewer than ``limit`` (``pgqueue prune``, and any pruner).
PRUNE_TASKS = """
DELETE FROM {s}.task t
WHERE t.id IN (
    SELECT id FROM {s}.task
    WHERE status = ANY(%(states)s::smallint[]) AND status IN (1, 2, 3)
      AND time_ended < now() - %(older_than)s::float8 * interval '1 second'
    ORDER BY time_ended
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""

REGISTER_WORKER = """
INSERT INTO {s}.worker (id, hostname, pid, queues, backlog, lease_seconds)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::text[], %(backlog)s, %(lease)s)
"""

#: One round trip per beat (a job holding the GIL delays each one): refresh heartbeat_at, say
#: whether the row is still live, and list this worker's running tasks whose revoke was
#: requested (catches notifications missed while the listener reconnected).
HEARTBEAT_WORKER = """
WITH beat AS (
    UPDATE {s}.worker SET heartbeat_at = now() WHERE id = %(id)s AND stopped_at IS NULL
    RETURNING id
)
SELECT EXISTS (SELECT FROM beat) AS alive,
       ARRAY(SELECT t.id::text FROM {s}.task t
             WHERE t.worker = %(id)s AND t.status = 5 AND t.revoke_requested_at IS NOT NULL)
       AS revoked
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

    #: Namespaces searched, in order, for the template ``NAME`` of attribute ``name``. A
    #: subclass adding a module of statements puts that module's ``globals()`` first.
    sources: ClassVar[tuple[Mapping[str, object], ...]] = (globals(),)

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._quoted = quote_ident(schema)

    def __getattr__(self, name: str) -> str:
        if not name.startswith("_"):
            for source in self.sources:
                template = source.get(name.upper())
                if isinstance(template, str):
                    rendered = template.replace("{s}", self._quoted)
                    setattr(self, name, rendered)
                    return rendered
        raise AttributeError(name)


# -- crash safety: rescue, give-back, revoke (pgqueue.rescuer, pgqueue.worker) ----------------

#: A worker is lost once its lease has run out since its last heartbeat, counted from the
#: server's start when that is later: a database outage or restart never makes a live worker
#: look dead (F06). Missing and stopped workers are lost at once (F02).
WORKER_LOST = """(w.id IS NULL OR w.stopped_at IS NOT NULL
     OR greatest(w.heartbeat_at, pg_postmaster_start_time())
        + w.lease_seconds * interval '1 second' < now())"""

#: What a lost worker's task becomes: 3 REVOKED if a revoke is pending, 4 RETRY while attempts
#: remain, else 2 FAILURE. It reads the locked row's current values.
RESCUED_STATUS = """CASE WHEN t.revoke_requested_at IS NOT NULL THEN 3
                  WHEN t.attempts <= t.max_retries THEN 4 ELSE 2 END"""

#: Rescue up to ``limit`` STARTED tasks whose worker is lost: back to RETRY after an
#: exponential backoff with jitter when attempts remain (the lost run counts as an attempt; the
#: exponent is capped before the power, so no attempt count overflows: F24), else FAILURE;
#: REVOKED when a revoke was requested. Rows are locked in id order with SKIP LOCKED, so
#: concurrent sweeps never wait on each other nor deadlock (F11), and the update
#: re-checks STARTED on the locked row, so a row that changed since it was read is left alone.
RESCUE_LOST_TASKS = f"""
WITH lost AS (
    SELECT t.id
    FROM {{s}}.task t LEFT JOIN {{s}}.worker w ON w.id = t.worker
    WHERE t.status = 5 AND {WORKER_LOST}
    ORDER BY t.id
    LIMIT %(limit)s
    FOR UPDATE OF t SKIP LOCKED
)
UPDATE {{s}}.task t
SET status = {RESCUED_STATUS},
    time_ended = CASE WHEN {RESCUED_STATUS} = 4 THEN NULL ELSE now() END,
    run_at = CASE WHEN {RESCUED_STATUS} = 4
                  THEN now() + least(%(backoff_cap)s::float8,
                                     %(backoff_base)s::float8
                                     * %(backoff_factor)s::float8
                                     ^ least(t.attempts - 1, %(backoff_max_exponent)s::integer))
                       * (1 - %(backoff_jitter)s::float8 * random()) * interval '1 second'
                  ELSE t.run_at END,
    error = 'worker lost: ' || coalesce(t.worker, 'unknown worker')
            || ' stopped heartbeating during attempt ' || t.attempts || ' of '
            || (t.max_retries::bigint + 1) || CASE {RESCUED_STATUS}
                WHEN 4 THEN '; retrying'
                WHEN 3 THEN '; revoked as requested'
                ELSE '; no retries left' END,
    traceback = NULL
FROM lost
WHERE t.id = lost.id AND t.status = 5
RETURNING t.id::text AS id, t.name, t.status, t.attempts, t.worker
"""

#: Give back tasks a stopping worker did not finish: QUEUED (RETRY if an earlier attempt
#: failed) and claimable now, with the attempt this worker used handed back. Fenced like
#: FINISH_TASKS on (id, attempt, STARTED, worker). A task with a revoke pending ends REVOKED.
GIVE_BACK_TASKS = """
UPDATE {s}.task t
SET status = CASE WHEN t.revoke_requested_at IS NOT NULL THEN 3
                  WHEN t.attempts > 1 THEN 4 ELSE 6 END,
    attempts = CASE WHEN t.revoke_requested_at IS NOT NULL THEN t.attempts
                    ELSE t.attempts - 1 END,
    time_ended = CASE WHEN t.revoke_requested_at IS NOT NULL THEN now() END,
    run_at = CASE WHEN t.revoke_requested_at IS NOT NULL THEN t.run_at ELSE now() END
FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS g(id, attempt)
WHERE t.id = g.id AND t.attempts = g.attempt AND t.status = 5 AND t.worker = %(worker)s
RETURNING t.id::text AS id, t.name, t.status
"""

#: Revoke one task: QUEUED or RETRY go straight to REVOKED (releasing the lock_id); a STARTED
#: one gets ``revoke_requested_at`` and its worker is told on ``<queue>_task_revoke``, unless
#: the NOTIFY queue is half full (F27: notifying could then fail the commit); the worker's
#: heartbeat finds the request anyway.
REVOKE_TASK = """
WITH changed AS (
    UPDATE {s}.task t
    SET status = CASE WHEN t.status = 5 THEN 5 ELSE 3 END,
        time_ended = CASE WHEN t.status = 5 THEN NULL ELSE now() END,
        error = CASE WHEN t.status = 5 THEN t.error ELSE %(reason)s::text END,
        revoke_requested_at = now()
    WHERE t.id = %(id)s::uuid AND t.status IN (4, 5, 6)
    RETURNING t.id, t.queue, t.status
), told AS (
    SELECT pg_notify(queue || '_task_revoke', id::text) FROM changed
    WHERE status = 5 AND pg_notification_queue_usage() < 0.5
)
SELECT c.id::text AS id, c.status, (SELECT count(*) FROM told) AS told FROM changed c
"""

#: Re-register a worker whose row vanished (pruned by mistake) so it may go on claiming; no
#: row comes back when the row exists but was marked stopped (the worker must then stop).
REREGISTER_WORKER = """
INSERT INTO {s}.worker (id, hostname, pid, queues, backlog, lease_seconds)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::text[], %(backlog)s, %(lease)s)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

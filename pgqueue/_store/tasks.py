"""Tasks as a client sees them: enqueue one or many, read them, flush a queue, revoke one.

These operations run on the backend's pools, sync or async, or on a connection the caller
gives (:mod:`pgqueue._connections`): each builds an :class:`~pgqueue._store._op.Op`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from .._task import TASK_COLUMNS, Task
from ._op import Op, StoreBase, first


def lock_id_sql(name: str, kwargs: str) -> str:
    """The lock_id expression for SQL expressions ``name`` (text) and ``kwargs`` (jsonb).

    sha256 over the job name, a space and the canonical jsonb text of the kwargs (jsonb sorts
    keys), so the same call always yields the same lock. The SQL function ``queue_task`` of
    revision pgqueue_0003_integration computes the same; a test keeps the two equal.
    """
    return f"encode(sha256(convert_to({name} || ' ' || {kwargs}::text, 'UTF8')), 'hex')"


_T = ", ".join(f"t.{c}" for c in TASK_COLUMNS)

#: lock_id of a non-overlapping task queued by :data:`QUEUE_TASK`.
LOCK_ID = lock_id_sql("%(name)s::text", "%(kwargs)s::jsonb")


def unique_window_sql(lock_id: str, unique_for: str) -> str:
    """SQL that is true unless a task with lock_id ``lock_id`` started within the last
    ``unique_for`` seconds (``Job.unique_for``; NULL: always true). Both are SQL expressions;
    the index task_lock_id_started of revision pgqueue_0006_flow serves the lookup."""
    return (
        f"({unique_for} IS NULL OR NOT EXISTS (SELECT FROM {{s}}.task w "
        f"WHERE w.lock_id = {lock_id} "
        f"AND w.time_started > now() - {unique_for} * interval '1 second'))"
    )


def _queue_task_sql(on_conflict: str) -> str:
    """:data:`QUEUE_TASK` with ``on_conflict`` as what a held lock_id does."""
    return f"""
INSERT INTO {{s}}.task AS t (name, queue, lock_id, priority, kwargs, meta_params,
                             run_at, expiry, max_retries, limit_key, concurrency,
                             rate_count, rate_seconds)
SELECT %(name)s::text, %(queue)s::text,
       CASE WHEN %(can_overlap)s::boolean THEN NULL ELSE {LOCK_ID} END,
       %(priority)s::integer, %(kwargs)s::jsonb, %(meta_params)s::jsonb,
       COALESCE(%(run_at)s::timestamptz,
                now() + %(countdown)s::float8 * interval '1 second',
                now()),
       COALESCE(%(expiry_at)s::timestamptz, now() + %(expiry_in)s::float8 * interval '1 second'),
       %(max_retries)s::integer, %(limit_key)s::text, %(concurrency)s::integer,
       %(rate_count)s::integer, %(rate_seconds)s::float8
WHERE {unique_window_sql(LOCK_ID, "%(unique_for)s::float8")}
ON CONFLICT (lock_id) WHERE status IN (4, 5, 6) {on_conflict}
RETURNING t.id::text AS id
"""


#: Queue one task. A job that cannot overlap gets a lock_id; while a live task holds it,
#: nothing is inserted, and (``unique_for``) neither while a task that held it started less
#: than ``unique_for`` seconds ago.
QUEUE_TASK = _queue_task_sql("DO NOTHING")

#: :data:`QUEUE_TASK` with ``debounce``: when a QUEUED copy (same lock_id, not yet started)
#: waits, its run_at moves to now + ``debounce`` seconds and its id is returned instead, so a
#: burst of calls runs once, after the burst.
QUEUE_TASK_DEBOUNCED = _queue_task_sql(
    "DO UPDATE SET run_at = now() + %(debounce)s::float8 * interval '1 second' WHERE t.status = 6"
)

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
             expiry_in float8, max_retries integer, limit_key text, concurrency integer,
             rate_count integer, rate_seconds float8, unique_for float8))
         WITH ORDINALITY AS i(name, queue, can_overlap, priority, kwargs, meta_params, run_at,
                              countdown, expiry_at, expiry_in, max_retries, limit_key,
                              concurrency, rate_count, rate_seconds, unique_for, ord)
), inserted AS (
    INSERT INTO {{s}}.task AS t (id, name, queue, lock_id, priority, kwargs, meta_params,
                                 run_at, expiry, max_retries, limit_key, concurrency,
                                 rate_count, rate_seconds)
    SELECT id, name, queue, lock_id, priority, kwargs, meta_params,
           COALESCE(run_at, now() + countdown * interval '1 second', now()),
           COALESCE(expiry_at, now() + expiry_in * interval '1 second'),
           max_retries, limit_key, concurrency, rate_count, rate_seconds
    FROM input
    WHERE {unique_window_sql("input.lock_id", "input.unique_for")}
    ORDER BY lock_id NULLS FIRST, ord
    ON CONFLICT (lock_id) WHERE status IN (4, 5, 6) DO NOTHING
    RETURNING t.id
)
SELECT inserted.id::text AS id
FROM input LEFT JOIN inserted USING (id)
ORDER BY input.ord
"""

GET_TASKS = f"SELECT {_T} FROM {{s}}.task t WHERE t.id = ANY(%(ids)s::uuid[])"

#: Delete the tasks of a queue that have not started. Their waiting dependents in other
#: queues (workflows) end REVOKED, saying which parent was flushed, and so do theirs (the
#: trigger ``task_dependents_batch``): a child never waits for a parent that is gone. The count
#: is of the deleted tasks.
FLUSH_QUEUE = """
WITH flushed AS (
    DELETE FROM {s}.task WHERE queue = %(queue)s AND status IN (4, 6) RETURNING id, name
), orphaned AS (
    UPDATE {s}.task c
    SET status = 3, time_ended = now(), waiting_on = 0,
        error = format('parent %%s (%%s) was flushed before it ran', f.id, f.name)
    FROM {s}.task_dependency d JOIN flushed f ON f.id = d.parent
    WHERE c.id = d.child AND c.status IN (4, 6) AND c.queue <> %(queue)s
)
SELECT count(*) AS n FROM flushed
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


class CommonParams(TypedDict):
    """The parameters of :data:`QUEUE_TASK` shared by the tasks of one call (all but the
    kwargs): ``meta_params`` as JSON text; ``run_at``/``countdown`` and
    ``expiry_at``/``expiry_in`` as an aware datetime or seconds from the database's now();
    ``concurrency`` and ``rate_count`` per ``rate_seconds`` the job's limits (None: none);
    ``unique_for`` the job's unique window in seconds (None: none)."""

    name: str
    queue: str
    priority: int
    meta_params: str
    run_at: datetime | None
    countdown: float | None
    expiry_at: datetime | None
    expiry_in: float | None
    max_retries: int
    concurrency: int | None
    rate_count: int | None
    rate_seconds: float | None
    unique_for: float | None


class TaskParams(CommonParams):
    """Every parameter of :data:`QUEUE_TASK`: the common ones, ``can_overlap``, the kwargs as
    JSON text and the ``limit_key`` they give (None: the job has none)."""

    can_overlap: bool
    kwargs: str
    limit_key: str | None


class RevokedRow(TypedDict):
    """What :data:`REVOKE_TASK` changed: the task, its status after (5: asked to stop), and
    how many workers were told."""

    id: str
    status: int
    told: int


def _queued_id(found: list[Any], count: int) -> str | None:
    return str(found[0]["id"]) if found else None


def _queued_ids(found: list[Any], count: int) -> list[str | None]:
    return [None if row["id"] is None else str(row["id"]) for row in found]


def _count(found: list[Any], count: int) -> int:
    return int(found[0]["n"])


def _tasks(found: list[Any], count: int) -> list[Task]:
    return [Task.from_row(row) for row in found]


class TaskOps(StoreBase):
    """Enqueue, read, flush and revoke (see the module docstring)."""

    def queue_task(self, task: TaskParams) -> Op[str | None]:
        """Insert one task; the result is its id, or None when the job cannot overlap and a
        live task holds its lock_id (nothing inserted, the transaction stays usable)."""
        return Op(self._sql(QUEUE_TASK), task, _queued_id)

    def queue_task_debounced(self, task: TaskParams, *, debounce: float) -> Op[str | None]:
        """:meth:`queue_task`, except that a QUEUED copy holding the lock_id has its run_at
        moved to now + ``debounce`` seconds and its id is the result (see
        :data:`QUEUE_TASK_DEBOUNCED`); None when a started copy holds it."""
        return Op(self._sql(QUEUE_TASK_DEBOUNCED), {**task, "debounce": debounce}, _queued_id)

    def queue_tasks(self, *, tasks: str) -> Op[list[str | None]]:
        """Insert a batch from one JSON document (see :data:`QUEUE_TASKS`): the id of each
        task in input order, None where its lock_id was held."""
        return Op(self._sql(QUEUE_TASKS), {"tasks": tasks}, _queued_ids)

    def get_tasks(self, *, ids: list[str]) -> Op[list[Task]]:
        """The tasks with these ids (canonical UUID text) that exist, in no particular order."""
        return Op(self._sql(GET_TASKS), {"ids": ids}, _tasks)

    def flush_queue(self, *, queue: str) -> Op[int]:
        """Delete the QUEUED and RETRY tasks of ``queue``; the result is how many."""
        return Op(self._sql(FLUSH_QUEUE), {"queue": queue}, _count)

    def revoke_task(self, *, id: str, reason: str) -> Op[RevokedRow | None]:
        """Revoke task ``id`` (see :data:`REVOKE_TASK`); None when it was not live."""
        return Op(self._sql(REVOKE_TASK), {"id": id, "reason": reason}, first)

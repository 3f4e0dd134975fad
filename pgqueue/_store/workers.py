"""Workers' rows: register, register again, heartbeat, stop; and the rescue of the tasks of
lost workers (:mod:`pgqueue._rescuer`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from ._op import Op, StoreBase, any_row, first, nothing, rows

REGISTER_WORKER = """
INSERT INTO {s}.worker (id, hostname, pid, queues, backlog, lease_seconds)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::text[], %(backlog)s, %(lease)s)
"""

#: One round trip per beat (a job holding the GIL delays each one): refresh heartbeat_at, say
#: whether the row is still live, list this worker's running tasks whose revoke was requested
#: (catches notifications missed while the listener reconnected), and list which of the
#: executions the worker still runs (``ids`` with their ``attempts``) are no longer STARTED
#: under it on that attempt: their lease is gone (rescued while the worker was frozen, F21).
HEARTBEAT_WORKER = """
WITH beat AS (
    UPDATE {s}.worker SET heartbeat_at = now() WHERE id = %(id)s AND stopped_at IS NULL
    RETURNING id
)
SELECT EXISTS (SELECT FROM beat) AS alive,
       ARRAY(SELECT t.id::text FROM {s}.task t
             WHERE t.worker = %(id)s AND t.status = 5 AND t.revoke_requested_at IS NOT NULL)
       AS revoked,
       coalesce(l.ids, '{}') AS lost, coalesce(l.attempts, '{}') AS lost_attempts
FROM (SELECT array_agg(h.id::text ORDER BY h.n) AS ids,
             array_agg(h.attempt ORDER BY h.n) AS attempts
      FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) WITH ORDINALITY AS h(id, attempt, n)
      WHERE NOT EXISTS (SELECT FROM {s}.task t
                        WHERE t.id = h.id AND t.status = 5 AND t.worker = %(id)s
                          AND t.attempts = h.attempt)) l
"""

#: The longest a heartbeat waits for a lock on the worker's row (an operator's open
#: transaction, say) before it gives up this beat and tries again (F23). Set with SET LOCAL,
#: inside the beat's own transaction, so no session state is left behind for a pooler to drop.
HEARTBEAT_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %(timeout)s, true)"

STOP_WORKER = """
UPDATE {s}.worker SET stopped_at = now(), heartbeat_at = now() WHERE id = %(id)s
"""

#: Re-register a worker whose row vanished (pruned by mistake) so it may go on claiming; no
#: row comes back when the row exists but was marked stopped (the worker must then stop).
REREGISTER_WORKER = """
INSERT INTO {s}.worker (id, hostname, pid, queues, backlog, lease_seconds)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::text[], %(backlog)s, %(lease)s)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

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

#: What a rescued task's row becomes (a lost worker's, or a live worker's orphan): back to
#: RETRY after an exponential backoff with jitter when attempts remain (the run that was cut
#: short counts as an attempt; the exponent is capped before the power, so no attempt count
#: overflows: F24), else FAILURE; REVOKED when a revoke was requested. ``{{why}}`` is the SQL
#: text expression that starts the error, up to the attempt number.
_RESCUE_SET = f"""status = {RESCUED_STATUS},
    time_ended = CASE WHEN {RESCUED_STATUS} = 4 THEN NULL ELSE now() END,
    run_at = CASE WHEN {RESCUED_STATUS} = 4
                  THEN now() + least(%(backoff_cap)s::float8,
                                     %(backoff_base)s::float8
                                     * %(backoff_factor)s::float8
                                     ^ least(t.attempts - 1, %(backoff_max_exponent)s::integer))
                       * (1 - %(backoff_jitter)s::float8 * random()) * interval '1 second'
                  ELSE t.run_at END,
    error = {{why}} || t.attempts || ' of '
            || (t.max_retries::bigint + 1) || CASE {RESCUED_STATUS}
                WHEN 4 THEN '; retrying'
                WHEN 3 THEN '; revoked as requested'
                ELSE '; no retries left' END,
    traceback = NULL"""

_LOST_WHY = """'worker lost: ' || coalesce(t.worker, 'unknown worker')
            || ' stopped heartbeating during attempt '"""
_ORPHAN_WHY = """'worker ' || t.worker || ' holds no run of it (an outcome or a give-back lost'
            || ' in a failover?): attempt '"""

#: Rescue up to ``limit`` STARTED tasks whose worker is lost (see :data:`_RESCUE_SET`). Rows
#: are locked in id order with SKIP LOCKED, so concurrent sweeps never wait on each other nor
#: deadlock (F11), and the update re-checks STARTED on the locked row, so a row that changed
#: since it was read is left alone.
#:
#: A late heartbeat is never a reason on its own (F23): the sweeping worker never takes its
#: own tasks (``worker``), and a lost worker's row is locked (``FOR NO KEY UPDATE SKIP
#: LOCKED``, re-checked on the locked row) before its tasks are taken, so a row another
#: session holds (a heartbeat being written, an operator's open transaction) is skipped this
#: time. Only the rows of workers that hold STARTED tasks are locked.
RESCUE_LOST_TASKS = f"""
WITH lost_workers AS MATERIALIZED (
    SELECT w.id
    FROM {{s}}.worker w
    WHERE w.id IN (SELECT t.worker FROM {{s}}.task t WHERE t.status = 5)
      AND w.id <> %(worker)s AND {WORKER_LOST}
    FOR NO KEY UPDATE OF w SKIP LOCKED
), lost AS (
    SELECT t.id
    FROM {{s}}.task t LEFT JOIN {{s}}.worker w ON w.id = t.worker
    WHERE t.status = 5 AND t.worker IS DISTINCT FROM %(worker)s
      AND (w.id IS NULL OR t.worker IN (SELECT id FROM lost_workers))
    ORDER BY t.id
    LIMIT %(limit)s
    FOR NO KEY UPDATE OF t SKIP LOCKED
)
UPDATE {{s}}.task t
SET {_RESCUE_SET.format(why=_LOST_WHY)}
FROM lost
WHERE t.id = lost.id AND t.status = 5
RETURNING t.id::text AS id, t.name, t.status, t.attempts, t.worker
"""

#: Rescue the orphans of live worker ``worker``: tasks STARTED under it for more than
#: ``after`` seconds that are not among those it holds (``claimed``: running, or returned with
#: an outcome still to write). Its heartbeat keeps its lease, so no other worker rescues them,
#: and it will never write their outcome: a failover to a standby that had not received a
#: write (the outcome, or the give-back at a stop) brings back the row of a task the worker
#: already finished. The rescue runs them again (or ends them), as for a lost worker; a task
#: claimed after ``claimed`` was read is younger than ``after``, one written meanwhile is no
#: longer STARTED, one being written is locked and skipped.
RESCUE_ORPHANED_TASKS = f"""
WITH orphaned AS (
    SELECT t.id
    FROM {{s}}.task t
    WHERE t.worker = %(worker)s AND t.status = 5
      AND t.time_started < now() - %(after)s::float8 * interval '1 second'
      AND t.id <> ALL (%(claimed)s::uuid[])
    ORDER BY t.id
    FOR NO KEY UPDATE OF t SKIP LOCKED
)
UPDATE {{s}}.task t
SET {_RESCUE_SET.format(why=_ORPHAN_WHY)}
FROM orphaned
WHERE t.id = orphaned.id AND t.status = 5
RETURNING t.id::text AS id, t.name, t.status, t.attempts, t.worker
"""


class Registration(TypedDict):
    """A worker's row as it registers: identity, host, pid, queues, backlog and lease
    (seconds)."""

    id: str
    hostname: str
    pid: int
    queues: list[str]
    backlog: int
    lease: float


class Beat(TypedDict):
    """One heartbeat: whether the worker's row is still live, its running tasks whose revoke
    was requested, and the executions it sent that are no longer its own (lease lost)."""

    alive: bool
    revoked: list[str]
    lost: list[str]
    #: The attempt of each of ``lost``, in the same order: the same task may be held twice
    #: (an old run still ending, a new one claimed again) and only the old one is lost.
    lost_attempts: list[int]


class RescueBackoff(TypedDict):
    """When a rescued task is retried, as the rescue statements apply it on the database
    clock: the delay ``base * factor ** min(attempts - 1, max_exponent)`` seconds, at most
    ``cap``, less a random fraction up to ``jitter`` (the parameters of
    :class:`pgqueue._retry.ExponentialBackoff`)."""

    backoff_base: float
    backoff_factor: float
    backoff_cap: float
    backoff_jitter: float
    backoff_max_exponent: int


class RescuedRow(TypedDict):
    """A task rescued from a lost worker, and its status after (4 RETRY, 2 FAILURE, 3
    REVOKED)."""

    id: str
    name: str
    status: int
    attempts: int
    worker: str | None


class WorkerOps(StoreBase):
    """Worker rows and the rescue of lost workers' tasks (see the module docstring)."""

    def register_worker(self, registration: Registration) -> Op[None]:
        """Insert the row of a starting worker."""
        return Op(self._sql(REGISTER_WORKER), registration, nothing)

    def reregister_worker(self, registration: Registration) -> Op[bool]:
        """Insert the row again if it vanished; False when it exists (marked stopped)."""
        return Op(self._sql(REREGISTER_WORKER), registration, any_row)

    def heartbeat_worker(
        self, *, id: str, ids: Sequence[str] = (), attempts: Sequence[int] = ()
    ) -> Op[Beat | None]:
        """Beat for worker ``id`` (see :data:`HEARTBEAT_WORKER`); ``ids`` and ``attempts``
        (same length) are the executions the worker still runs."""
        params = {"id": id, "ids": list(ids), "attempts": list(attempts)}
        return Op(self._sql(HEARTBEAT_WORKER), params, first)

    def heartbeat_lock_timeout(self, *, seconds: float) -> Op[None]:
        """Make the current transaction wait at most ``seconds`` for a lock (see
        :data:`HEARTBEAT_LOCK_TIMEOUT`); run it in the beat's transaction, before the beat."""
        params = {"timeout": f"{max(int(seconds * 1000), 1)}ms"}
        return Op(self._sql(HEARTBEAT_LOCK_TIMEOUT), params, nothing)

    def stop_worker(self, *, id: str) -> Op[None]:
        """Mark worker ``id`` stopped."""
        return Op(self._sql(STOP_WORKER), {"id": id}, nothing)

    def rescue_lost_tasks(
        self, *, worker: str, limit: int, backoff: RescueBackoff
    ) -> Op[list[RescuedRow]]:
        """Rescue up to ``limit`` tasks of lost workers other than ``worker`` (the sweeping
        worker's own id, or ``""``; see :data:`RESCUE_LOST_TASKS`); ``backoff`` sets when a
        retried one is due."""
        params = {"worker": worker, "limit": limit, **backoff}
        return Op(self._sql(RESCUE_LOST_TASKS), params, rows)

    def rescue_orphaned_tasks(
        self, *, worker: str, claimed: list[str], after: float, backoff: RescueBackoff
    ) -> Op[list[RescuedRow]]:
        """Rescue the tasks STARTED under live worker ``worker`` for more than ``after``
        seconds that are not among its ``claimed`` task ids (see
        :data:`RESCUE_ORPHANED_TASKS`); ``backoff`` as in :meth:`rescue_lost_tasks`."""
        params = {"worker": worker, "claimed": claimed, "after": after, **backoff}
        return Op(self._sql(RESCUE_ORPHANED_TASKS), params, rows)

"""The worker's hot path: claim due tasks, write their outcomes, give back unfinished ones,
revoke expired ones and find when the next one is due.

The claim reads its rows with :func:`pgqueue.task.task_row` (a :class:`Task` per row, no dict
in between); each statement is rendered once per store, so psycopg prepares it once per
connection and the claimer keeps its generic plan (:func:`pgqueue._store.session.claim_session`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from ..task import Task, task_row
from ._op import Op, StoreBase, rows
from .tasks import _T

#: The task columns as a claim returns them: the id as text, not a uuid to convert back.
_T_CLAIMED = _T.replace("t.id, ", "t.id::text AS id, ", 1)

#: A claimed row whose ``attempts`` cannot grow (integer column at its maximum).
_WORN_OUT = "t.attempts = 2147483647"

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
#: every other task (F24). A task still waiting for parents (``waiting_on > 0``, see
#: :mod:`pgqueue._store.workflows`) is not claimable; the index holds only ``waiting_on = 0``.
CLAIM_TASKS = f"""
WITH picked AS (
    SELECT c.id, c.expired
    FROM unnest(%(queues)s::text[]) AS q(queue)
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at, expiry IS NOT NULL AND expiry <= now() AS expired
        FROM {{s}}.task
        WHERE queue = q.queue AND status IN (4, 6) AND run_at <= now()
          AND waiting_on = 0 -- workflows: no parent left to wait for (as in task_claimable)
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

NEXT_RUN_AT = """
SELECT extract(epoch FROM min(run_at) - now())::float8 AS seconds
FROM {s}.task
WHERE status IN (4, 6) AND waiting_on = 0 AND queue = ANY(%(queues)s::text[]) AND run_at > now()
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


class FinishedRow(TypedDict):
    """A task :data:`FINISH_TASKS` wrote, and its ``time_ended`` (None for RETRY)."""

    id: str
    time_ended: datetime | None


class GivenBackRow(TypedDict):
    """A task :data:`GIVE_BACK_TASKS` handed back: its status after (6, 4, or 3 if revoked)."""

    id: str
    name: str
    status: int


class IdRow(TypedDict):
    """A task id as text."""

    id: str


def _claimed(found: list[Any], count: int) -> list[Task]:
    return found


def _seconds(found: list[Any], count: int) -> float | None:
    seconds: float | None = found[0]["seconds"] if found else None
    return seconds


class ClaimOps(StoreBase):
    """The claim and finish path of a worker (see the module docstring)."""

    def claim_tasks(
        self, *, queues: list[str], jobs: list[str], limit: int, worker: str
    ) -> Op[list[Task]]:
        """Claim up to ``limit`` due tasks of ``jobs`` on ``queues`` for ``worker`` (see
        :data:`CLAIM_TASKS`): STARTED ones, and REVOKED ones that expired before starting."""
        params = {"queues": queues, "jobs": jobs, "limit": limit, "worker": worker}
        return Op(self._sql(CLAIM_TASKS), params, _claimed, task_row)

    def finish_tasks(
        self,
        *,
        ids: list[str],
        attempts: list[int],
        statuses: list[int],
        results: list[str | None],
        errors: list[str | None],
        tracebacks: list[str | None],
        delays: list[float | None],
        worker: str,
    ) -> Op[list[FinishedRow]]:
        """Write the outcomes of several executions (parallel lists, see
        :data:`FINISH_TASKS`); the result lists the rows the fence let through."""
        params = {
            "ids": ids,
            "attempts": attempts,
            "statuses": statuses,
            "results": results,
            "errors": errors,
            "tracebacks": tracebacks,
            "delays": delays,
            "worker": worker,
        }
        return Op(self._sql(FINISH_TASKS), params, rows)

    def give_back_tasks(
        self, *, ids: list[str], attempts: list[int], worker: str
    ) -> Op[list[GivenBackRow]]:
        """Hand back unfinished tasks of a stopping ``worker`` (see :data:`GIVE_BACK_TASKS`)."""
        params = {"ids": ids, "attempts": attempts, "worker": worker}
        return Op(self._sql(GIVE_BACK_TASKS), params, rows)

    def revoke_expired(self, *, queues: list[str], limit: int) -> Op[list[IdRow]]:
        """The expiry sweep: revoke up to ``limit`` claimable tasks of ``queues`` past expiry."""
        return Op(self._sql(REVOKE_EXPIRED), {"queues": queues, "limit": limit}, rows)

    def next_run_at(self, *, queues: list[str]) -> Op[float | None]:
        """Seconds until the next scheduled task of ``queues`` is due; None when none waits."""
        return Op(self._sql(NEXT_RUN_AT), {"queues": queues}, _seconds)

"""The worker's hot path: claim due tasks, write their outcomes, give back unfinished ones,
revoke expired ones and find when the next one is due.

The claim reads its rows with :func:`pgqueue._task.task_row` (a :class:`Task` per row, no dict
in between); each statement is rendered once per store, so psycopg prepares it once per
connection and the claimer keeps its generic plan (:func:`pgqueue._store.session.claim_session`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from .._task import Task, task_row
from ._op import Op, StoreBase, rows
from .tasks import _T

#: The task columns as a claim returns them: the id as text, not a uuid to convert back.
_T_CLAIMED = _T.replace("t.id, ", "t.id::text AS id, ", 1)

#: A claimed row whose ``attempts`` cannot grow (integer column at its maximum).
_WORN_OUT = "t.attempts = 2147483647"

#: Flow control of the claim (revision pgqueue_0006_flow), kept in this one place: the queues
#: the claim reads, paused ones left out, each with its concurrency limit. One primary-key
#: probe of queue_setting per queue, read in the claim's own snapshot, so a pause is
#: fleet-wide and holds from the next claim of every worker (a claim already running when the
#: pause commits may still start its tasks).
_FLOW_QUEUES = """(
        SELECT u.queue, qs.concurrency, qs.rate_count, qs.rate_seconds
        FROM unnest(%(queues)s::text[]) AS u(queue)
        LEFT JOIN LATERAL (
            SELECT * FROM {s}.queue_setting s WHERE s.queue = u.queue
            LIMIT 1 -- kept a probe per queue: joined, it was planned as a scan of the table
        ) qs ON true
        WHERE qs.paused_at IS NULL
    ) AS q(queue, queue_limit, queue_rate_count, queue_rate_seconds)"""

#: The columns of a claim candidate (``c``) a claim reads from the task row.
_CANDIDATE_ROW = """id, priority, run_at, name, limit_key, concurrency, rate_count, rate_seconds,
               expiry IS NOT NULL AND expiry <= now() AS expired"""

#: The claim's candidates, from the queues ``q`` of ``{queues}`` (with their limits): in each
#: queue its first ``limit`` due tasks of ``jobs`` in claim order (priority, run_at, id),
#: locked, skipping rows another claim holds. Each job is read on its own through the partial
#: index ``task_claimable_job (queue, name, priority DESC, run_at, id)`` (revision
#: pgqueue_0014_claim_by_job), so the tasks of jobs the worker does not know, queued ahead of
#: its own, are never read (F33: 200,000 of them cost each claim 17 ms).
#: This is the claim of a worker of several jobs (a worker of one job reads it in one scan:
#: :data:`_CANDIDATES_OF_ONE_JOB`). ``shares``: how many of those ``limit`` tasks each job
#: has: the jobs' first ``limit`` tasks each, read without locks, merged in claim order.
#: ``locked``: that many tasks of each job in its order, locked, so a claim locks ``limit``
#: rows per queue, whatever the number of jobs. A row another claim holds is skipped for the
#: next one of the same job; should a job have none left (the other claim holds them all),
#: the queue comes up short of its share, and ``candidates`` tops it up from every job, the
#: rows this claim holds left out: so a claim never misses a task the other claim left.
_CANDIDATES_OF = """shares AS MATERIALIZED (
    SELECT q.queue, q.queue_limit, q.queue_rate_count, q.queue_rate_seconds, w.name, w.n
    FROM {queues}
    CROSS JOIN LATERAL (
        SELECT h.name, count(*) AS n
        FROM (
            SELECT j.name
            FROM unnest(%(jobs)s::text[]) AS j(name)
            CROSS JOIN LATERAL (
                SELECT x.priority, x.run_at, x.id
                FROM {s}.task x
                WHERE x.queue = q.queue AND x.name = j.name AND x.status IN (4, 6)
                  AND x.waiting_on = 0 AND x.run_at <= now()
                ORDER BY x.priority DESC, x.run_at, x.id
                LIMIT %(limit)s
            ) x
            ORDER BY x.priority DESC, x.run_at, x.id
            LIMIT %(limit)s
        ) h
        GROUP BY h.name
    ) w
), locked AS MATERIALIZED (
    SELECT c.id, c.expired, c.priority, c.run_at, c.name, c.limit_key, c.concurrency,
           c.rate_count, c.rate_seconds, s.queue, s.queue_limit, s.queue_rate_count,
           s.queue_rate_seconds
    FROM shares s
    CROSS JOIN LATERAL (
        SELECT {row}
        FROM {s}.task
        WHERE queue = s.queue AND name = s.name AND status IN (4, 6) AND run_at <= now()
          AND waiting_on = 0 -- workflows: no parent left to wait for (as in the index)
        ORDER BY priority DESC, run_at, id
        LIMIT s.n
        -- NO KEY: an enqueue whose edge references the task (FOR KEY SHARE, held until
        -- its commit) does not hide it from the claim.
        FOR NO KEY UPDATE SKIP LOCKED
    ) c
), candidates AS MATERIALIZED (
    SELECT * FROM locked
    UNION ALL
    SELECT c.id, c.expired, c.priority, c.run_at, c.name, c.limit_key, c.concurrency,
           c.rate_count, c.rate_seconds, m.queue, m.queue_limit, m.queue_rate_count,
           m.queue_rate_seconds
    FROM (
        SELECT s.queue, s.queue_limit, s.queue_rate_count, s.queue_rate_seconds,
               %(limit)s - sum(coalesce(g.got, 0)) AS missing
        FROM shares s
        LEFT JOIN (SELECT queue, name, count(*) AS got FROM locked GROUP BY 1, 2) g
            ON g.queue = s.queue AND g.name = s.name
        GROUP BY 1, 2, 3, 4
        HAVING bool_or(coalesce(g.got, 0) < s.n)
    ) m
    CROSS JOIN unnest(%(jobs)s::text[]) AS j(name)
    CROSS JOIN LATERAL (
        SELECT {row}
        FROM {s}.task
        WHERE queue = m.queue AND name = j.name AND status IN (4, 6) AND run_at <= now()
          AND waiting_on = 0 AND id <> ALL(ARRAY(SELECT l.id FROM locked l))
        ORDER BY priority DESC, run_at, id
        LIMIT m.missing
        FOR NO KEY UPDATE SKIP LOCKED
    ) c
)"""


#: :data:`_CANDIDATES_OF` for a worker of one job: its first ``limit`` due tasks per queue in
#: one scan, locked as they are read (the claim of every worker before revision
#: pgqueue_0014_claim_by_job, with the job's name in the index instead of filtered after it).
_CANDIDATES_OF_ONE_JOB = """candidates AS MATERIALIZED (
    SELECT c.id, c.expired, c.priority, c.run_at, c.name, c.limit_key, c.concurrency,
           c.rate_count, c.rate_seconds, q.queue, q.queue_limit, q.queue_rate_count,
           q.queue_rate_seconds
    FROM {queues}
    CROSS JOIN LATERAL (
        SELECT {row}
        FROM {s}.task
        WHERE queue = q.queue AND name = (%(jobs)s::text[])[1] AND status IN (4, 6)
          AND run_at <= now()
          AND waiting_on = 0 -- workflows: no parent left to wait for (as in the index)
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR NO KEY UPDATE SKIP LOCKED
    ) c
)"""


def _candidates(queues: str, *, one_job: bool = False) -> str:
    """:data:`_CANDIDATES_OF` (or :data:`_CANDIDATES_OF_ONE_JOB`) from ``queues`` (``q``:
    queue, queue_limit, queue_rate_count, queue_rate_seconds)."""
    template = _CANDIDATES_OF_ONE_JOB if one_job else _CANDIDATES_OF
    return template.replace("{queues}", queues).replace("{row}", _CANDIDATE_ROW)


#: How many scopes (job, limit_key) one claim looks at per queue at most for tasks of limited
#: jobs (``flow_take``'s budget): bounds a claim's cost when most keys are at their limit.
FLOW_SCOPES_PER_CLAIM = 200

#: Flow control of the claim, continued: the tasks that may start. ``candidates`` are up to
#: ``limit`` due tasks per queue in claim order, as without limits: the unlimited ones (and
#: expired ones, revoked here) are taken from them. The tasks of limited jobs come from
#: ``flow_take`` (revision pgqueue_0010_flow_turns) instead: the scopes (job, limit_key) of a
#: queue take turns, one task per scope first, starting after where the queue's previous claim
#: stopped, then what is left shared between the scopes with room, and a scope is admitted under
#: its advisory lock with counts read in a fresh snapshot (F29), so a key at its limit never
#: holds back the keys behind it. ``turn`` is a task's place in its queue: its rank among the
#: unlimited candidates, or the round it was taken in. ``admission`` then asks ``flow_free`` how
#: many more tasks each limited queue may start (queues sorted: every claim takes the blocking
#: queue locks in one order; the scope locks are only tried, never waited for, so no deadlock),
#: and ``admitted`` keeps a task while its turn within its queue fits that number. ``logged``
#: records the starts of rate-limited scopes (``flow_start``).
_FLOW_ADMISSION = f"""
flow_queues AS MATERIALIZED (
    SELECT * FROM {_FLOW_QUEUES}
), {_candidates("flow_queues q")}, keyed AS MATERIALIZED (
    SELECT k.task_id AS id, k.turn, k.t_priority AS priority, k.t_run_at AS run_at,
           k.t_name AS name, k.t_limit_key AS limit_key, k.t_rate_count AS rate_count,
           k.t_rate_seconds AS rate_seconds, q.queue, q.queue_limit, q.queue_rate_count,
           q.queue_rate_seconds
    FROM flow_queues q
    CROSS JOIN LATERAL {{s}}.flow_take(q.queue, %(jobs)s::text[], %(limit)s::int,
                                       {FLOW_SCOPES_PER_CLAIM}) k
), pool AS MATERIALIZED (
    SELECT c.id, c.expired, c.priority, c.run_at, c.name, c.limit_key, c.rate_count,
           c.rate_seconds, c.queue, c.queue_limit, c.queue_rate_count, c.queue_rate_seconds,
           row_number() OVER (PARTITION BY c.queue ORDER BY c.priority DESC, c.run_at, c.id)
               AS turn
    FROM candidates c
    WHERE c.expired OR (c.concurrency IS NULL AND c.rate_count IS NULL)
    UNION ALL
    SELECT k.id, false, k.priority, k.run_at, k.name, k.limit_key, k.rate_count,
           k.rate_seconds, k.queue, k.queue_limit, k.queue_rate_count, k.queue_rate_seconds,
           k.turn
    FROM keyed k -- flow_take returns the columns: no join to the task table
), admission AS MATERIALIZED (
    SELECT s.queue,
           {{s}}.flow_free(NULL, NULL, s.queue, s.queue_limit, s.queue_rate_count,
                           s.queue_rate_seconds) AS free
    FROM (
        SELECT DISTINCT queue, queue_limit, queue_rate_count, queue_rate_seconds
        FROM pool
        WHERE (queue_limit IS NOT NULL OR queue_rate_count IS NOT NULL) AND NOT expired
        ORDER BY 1
    ) s
), admitted AS (
    SELECT c.id, c.expired, c.priority, c.run_at, c.turn, c.queue_turn
    FROM (
        SELECT p.*, row_number() OVER (PARTITION BY p.queue, p.expired
                                       ORDER BY p.priority DESC, p.turn, p.run_at, p.id)
                        AS queue_turn
        FROM pool p
    ) c
    LEFT JOIN admission a ON a.queue = c.queue
    WHERE c.expired OR (c.queue_limit IS NULL AND c.queue_rate_count IS NULL)
       OR c.queue_turn <= a.free
)"""

#: The order in which admitted candidates are picked: strict (priority, then run_at, across
#: all queues), or with ``fair`` each queue's first candidate before any queue's second, ties
#: between queues drawn at random, so one task of queue B never waits behind the whole
#: backlog of queue A (F31; ``pgqueue-worker --queue-order fair``).
_FLOW_ORDER = """CASE WHEN %(fair)s::boolean THEN a.queue_turn END,
             a.priority DESC, CASE WHEN %(fair)s::boolean THEN random() END,
             a.turn, a.run_at, a.id"""

#: The starts of rate-limited scopes among the picked candidates, recorded for their window:
#: a job's from ``now()``, the tasks' ``time_started`` (``flow_take`` compares with ``now()``
#: too, so the windows hold on the start times operators see), a queue's from the clock.
_FLOW_LOG = """
logged AS (
    INSERT INTO {s}.flow_start (scope, queue, reopens_at)
    SELECT {s}.flow_scope(c.name, c.limit_key, NULL), c.queue,
           now() + c.rate_seconds * interval '1 second'
    FROM picked p JOIN pool c ON c.id = p.id
    WHERE NOT c.expired AND c.rate_count IS NOT NULL
    UNION ALL
    SELECT {s}.flow_scope(NULL, NULL, c.queue), c.queue,
           clock_timestamp() + c.queue_rate_seconds * interval '1 second'
    FROM picked p JOIN pool c ON c.id = p.id
    WHERE NOT c.expired AND c.queue_rate_count IS NOT NULL
)"""

#: The claim's candidates: up to ``limit`` due tasks of ``jobs`` per queue of ``queues`` not
#: paused, locked (skipping rows another claim holds), with their limits and their queue's.
_CANDIDATES = _candidates(_FLOW_QUEUES)

#: Start (or end, if expired or worn out) the ``picked`` rows and return them.
_START_PICKED = f"""UPDATE {{s}}.task t
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

#: Claim up to ``limit`` due tasks in priority then run_at order. A task past its expiry is
#: revoked here instead of started (pulsar's TaskTimeout at execution time).
#: Each queue is read on its own (LATERAL), and in it each job (:data:`_CANDIDATES_OF`), so
#: the scans walk the partial index task_claimable_job in claim order and stop after
#: ``limit`` rows: the cost follows ``limit`` and the number of jobs, not the backlog (the
#: worker's own, or other jobs' in its queues, F33) nor the history (``queue = ANY(...)``
#: made PostgreSQL read and sort the whole backlog).
#: With several queues up to ``limit`` rows per queue are locked for the statement; the rows
#: not picked are free again at its commit. The worker keeps one generic plan of it: the
#: redundant ``t.id = ANY(ARRAY(...))`` makes that plan read the picked rows by primary key
#: whatever ``limit`` is, where the join alone was planned as a scan of the whole table.
#: A task whose ``attempts`` is at the integer limit (written by hand: no run adds that many)
#: ends FAILURE here instead of started, so its ``attempts + 1`` never fails the claim of
#: every other task (F24). Flow control (paused queues, concurrency limits) is
#: :data:`_FLOW_QUEUES`, :data:`_FLOW_ADMISSION` and :data:`_FLOW_LOG`; candidates a limit
#: holds back stay QUEUED, locked only until this statement commits.
#: A task still waiting for parents (``waiting_on > 0``, see
#: :mod:`pgqueue._store.workflows`) is not claimable; the index holds only ``waiting_on = 0``.
CLAIM_TASKS = f"""
WITH {_FLOW_ADMISSION}, picked AS (
    SELECT a.id, a.expired FROM admitted a
    ORDER BY {_FLOW_ORDER}
    LIMIT %(limit)s
), {_FLOW_LOG}
{_START_PICKED}"""

#: :data:`CLAIM_TASKS` for a worker of one job (``jobs`` holds one name).
CLAIM_TASKS_ONE_JOB = CLAIM_TASKS.replace(
    _candidates("flow_queues q"), _candidates("flow_queues q", one_job=True)
)

#: :data:`CLAIM_TASKS` for a claim none of whose candidates is limited, without the flow
#: control's admission, numbering and ``flow_start`` log, which cost a claim of 10 tasks on
#: an unlimited backlog a third more (their plan's nodes are set up on every execution even
#: when they have no row to read). All or nothing: when any candidate it may start is limited
#: (a job's or its queue's concurrency or rate limit, read from the rows and queue_setting in
#: the claim's own snapshot, so whatever any process configured) it starts none and returns no
#: row, and the caller claims with :data:`CLAIM_TASKS` instead; otherwise it starts exactly
#: what :data:`CLAIM_TASKS` in strict order would (every candidate admitted, none logged).
CLAIM_UNLIMITED_TASKS = f"""
WITH {_CANDIDATES}, picked AS (
    SELECT c.id, c.expired FROM candidates c
    WHERE NOT EXISTS (
        SELECT FROM candidates l
        WHERE NOT l.expired
          AND (l.concurrency IS NOT NULL OR l.rate_count IS NOT NULL
               OR l.queue_limit IS NOT NULL OR l.queue_rate_count IS NOT NULL))
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s
)
{_START_PICKED}"""

#: :data:`CLAIM_UNLIMITED_TASKS` for a worker of one job (``jobs`` holds one name).
CLAIM_UNLIMITED_TASKS_ONE_JOB = CLAIM_UNLIMITED_TASKS.replace(
    _CANDIDATES, _candidates(_FLOW_QUEUES, one_job=True)
)

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
    FOR NO KEY UPDATE SKIP LOCKED
) AND t.status IN (4, 6)
RETURNING t.id::text AS id
"""

#: Seconds until the next delayed task of the queues is due, or a rate window of theirs
#: reopens (a task a rate limit held back may start then: ``flow_start``), whichever is first.
NEXT_RUN_AT = """
SELECT extract(epoch FROM least(
    (SELECT min(run_at) FROM {s}.task
     WHERE status IN (4, 6) AND waiting_on = 0 AND queue = ANY(%(queues)s::text[])
       AND run_at > now()),
    (SELECT min(reopens_at) FROM {s}.flow_start
     WHERE queue = ANY(%(queues)s::text[]) AND reopens_at > now())
) - now())::float8 AS seconds
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
        self, *, queues: list[str], jobs: list[str], limit: int, worker: str, fair: bool = False
    ) -> Op[list[Task]]:
        """Claim up to ``limit`` due tasks of ``jobs`` on ``queues`` for ``worker`` (see
        :data:`CLAIM_TASKS`): STARTED ones, and REVOKED ones that expired before starting.
        ``fair``: take turns between the queues instead of strict priority and run_at order
        (see :data:`_FLOW_ORDER`)."""
        params = {"queues": queues, "jobs": jobs, "limit": limit, "worker": worker, "fair": fair}
        sql = CLAIM_TASKS_ONE_JOB if len(jobs) == 1 else CLAIM_TASKS
        return Op(self._sql(sql), params, _claimed, task_row)

    def claim_unlimited_tasks(
        self, *, queues: list[str], jobs: list[str], limit: int, worker: str
    ) -> Op[list[Task]]:
        """:meth:`claim_tasks` in strict order for claims without limits (see
        :data:`CLAIM_UNLIMITED_TASKS`): the same tasks as :meth:`claim_tasks` when none of
        its candidates is limited, at the cost of a claim before flow control; no task (an
        empty list) as soon as one is, then :meth:`claim_tasks` must claim instead."""
        params = {"queues": queues, "jobs": jobs, "limit": limit, "worker": worker}
        sql = CLAIM_UNLIMITED_TASKS_ONE_JOB if len(jobs) == 1 else CLAIM_UNLIMITED_TASKS
        return Op(self._sql(sql), params, _claimed, task_row)

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

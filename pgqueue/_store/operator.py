"""What operators' tools read and do (``pgqueue status/list/show/retry``, the dashboard, the
metrics).

Read queries go through the views of revision ``pgqueue_0004_operations`` (the stable SQL
surface) rather than the tables, so what the tools show is what an operator's own SQL shows.
Rows of the views are dicts of their columns (``Row``), as the tools render them whole.
"""

from __future__ import annotations

from typing import Any, TypedDict

from ._op import Op, StoreBase, any_row, first, nothing, rows

#: A row of a view, by column name.
Row = dict[str, Any]

QUEUE_STATS = "SELECT * FROM {s}.queue_stats ORDER BY queue, name"

#: Live tasks and the last hour's finished ones per queue and job, read through partial
#: indexes (revision pgqueue_0013_queue_stats): what the overview shows, whatever the history.
QUEUE_OVERVIEW = "SELECT * FROM {s}.queue_overview ORDER BY queue, name"

#: ``queue_throughput``'s columns over the last minute and the last five minutes (its hour
#: sorts every task of the hour four times for the percentiles: a second and more at 100
#: tasks/s), read through the partial index of finished tasks by end time.
QUEUE_THROUGHPUT_RECENT = """
SELECT t.queue, t.name, p.period,
       count(*) AS finished,
       count(*) FILTER (WHERE t.status = 1) AS succeeded,
       count(*) FILTER (WHERE t.status = 2) AS failed,
       count(*) FILTER (WHERE t.status = 3) AS revoked,
       (count(*) / extract(epoch FROM p.span))::float8 AS per_second,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM t.time_started - t.time_queued)::float8) AS wait_p50,
       percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM t.time_started - t.time_queued)::float8) AS wait_p95,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM t.time_ended - t.time_started)::float8) AS run_p50,
       percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM t.time_ended - t.time_started)::float8) AS run_p95
FROM (VALUES ('1 minute', interval '1 minute'), ('5 minutes', interval '5 minutes'))
         AS p(period, span)
JOIN (SELECT * FROM {s}.task
      WHERE status IN (1, 2, 3) AND time_ended > now() - interval '5 minutes') t
  ON t.time_ended > now() - p.span
GROUP BY t.queue, t.name, p.period, p.span
ORDER BY t.queue, t.name, p.span
"""

#: Last minute before last hour (the period names sort that way backwards).
QUEUE_THROUGHPUT = "SELECT * FROM {s}.queue_throughput ORDER BY queue, name, period DESC"

QUEUE_TIMELINE = "SELECT * FROM {s}.queue_timeline ORDER BY queue, minute"

#: Finished and failed tasks per queue in each of the last ``buckets`` periods of ``step``
#: seconds (a whole number of minutes; the last period holds now()), zeros included. The
#: minutes before ``ended_rollup.through`` come from the per-minute summary
#: ``ended_per_minute`` (revision pgqueue_0016_ended_per_minute, written by
#: :data:`ROLL_UP_ENDED`), the tasks finished since from the partial index of finished tasks
#: alone (``task_ended`` carries queue and status: revision pgqueue_0015_ended_covering), so
#: after a roll-up the cost follows the minutes of the range, not the tasks finished in it.
#: Before any roll-up every task finished in the range is counted from the index (about
#: 0.14 µs each). ``depth`` is 0: the depth over time is ``queue_timeline``'s, for the last
#: hour only.
QUEUE_ACTIVITY = """
WITH slots AS (
    SELECT generate_series(last - (%(buckets)s::integer - 1) * step, last, step) AS minute
    FROM (SELECT %(step)s::float8 * interval '1 second' AS step) p,
         LATERAL (SELECT date_bin(p.step, now(), timestamptz '2000-01-01') AS last) l
), span AS (
    SELECT (SELECT min(minute) FROM slots) AS low,
           COALESCE((SELECT through FROM {s}.ended_rollup), '-infinity') AS through
), ended AS (
    SELECT e.queue, e.minute AS at, e.finished, e.failed
    FROM {s}.ended_per_minute e, span
    WHERE e.minute >= span.low AND e.minute < span.through
  UNION ALL
    SELECT t.queue, t.time_ended, 1, (t.status = 2)::integer
    FROM {s}.task t, span
    WHERE t.status IN (1, 2, 3) AND t.time_ended >= greatest(span.low, span.through)
), counts AS (
    SELECT queue, date_bin(%(step)s::float8 * interval '1 second', at,
                           timestamptz '2000-01-01') AS minute,
           sum(finished) AS finished, sum(failed) AS failed
    FROM ended
    GROUP BY 1, 2
)
SELECT q.queue, s.minute, COALESCE(c.finished, 0)::bigint AS finished,
       COALESCE(c.failed, 0)::bigint AS failed, 0::bigint AS depth
FROM (SELECT DISTINCT queue FROM counts) q CROSS JOIN slots s
LEFT JOIN counts c ON c.queue = q.queue AND c.minute = s.minute
ORDER BY q.queue, s.minute
"""

#: Sum up the finished tasks of the closed minutes (those before the current and the previous
#: one) into ``ended_per_minute``, per queue: the minutes since ``ended_rollup.through``, and
#: again the :data:`ROLLUP_MARGIN` before it, so a finish committed a minute or two after its
#: ``time_ended`` (its transaction's start) is still counted; at most the last
#: :data:`ROLLUP_KEEP` are summed up or kept. A minute recounted to no task loses its row.
#: Then ``through`` moves to the first minute not summed up. Nothing is done until a minute
#: has closed since the last roll-up (so however often the charts are drawn, each minute is
#: counted at most a few times), nor when another roll-up is running: the roll-up locks the
#: one row of ``ended_rollup``, ``SKIP LOCKED``. Returns how many minute rows were written.
#: Reads the finished tasks through ``task_ended``.
ROLL_UP_ENDED = """
WITH mark AS (
    SELECT greatest(COALESCE(through - %(margin)s::float8 * interval '1 second', '-infinity'),
                    date_trunc('minute', now()) - %(keep)s::float8 * interval '1 second') AS low,
           date_trunc('minute', now()) - interval '1 minute' AS high
    FROM {s}.ended_rollup
    WHERE through IS NULL OR through < date_trunc('minute', now()) - interval '1 minute'
    FOR UPDATE SKIP LOCKED
), counts AS (
    SELECT date_trunc('minute', t.time_ended) AS minute, t.queue, count(*)::integer AS finished,
           (count(*) FILTER (WHERE t.status = 2))::integer AS failed
    FROM {s}.task t, mark
    WHERE t.status IN (1, 2, 3) AND t.time_ended >= mark.low AND t.time_ended < mark.high
    GROUP BY 1, 2
), written AS (
    INSERT INTO {s}.ended_per_minute AS e (minute, queue, finished, failed)
    SELECT minute, queue, finished, failed FROM counts
    ON CONFLICT (minute, queue) DO UPDATE SET finished = excluded.finished, failed = excluded.failed
    RETURNING 1
), emptied AS (
    DELETE FROM {s}.ended_per_minute e
    USING mark
    WHERE (e.minute >= mark.low AND e.minute < mark.high
           AND NOT EXISTS (SELECT FROM counts c WHERE c.minute = e.minute AND c.queue = e.queue))
       OR e.minute < date_trunc('minute', now()) - %(keep)s::float8 * interval '1 second'
), moved AS (
    UPDATE {s}.ended_rollup r SET through = mark.high FROM mark
)
SELECT count(*)::integer AS n FROM written
"""

#: Seconds before ``through`` that each roll-up counts again (late commits): a worker's finish
#: commits within milliseconds of its ``time_ended``; at 5,000 tasks/s a roll-up re-reads
#: about 600,000 index entries for these two minutes, once a minute.
ROLLUP_MARGIN = 120.0

#: Seconds of minutes the summary keeps: the week chart and a day to spare.
ROLLUP_KEEP = 8 * 86400.0

#: Depth of each queue by state, for the metrics: QUEUED and RETRY tasks that are due (not
#: those delayed into the future), and STARTED ones; read from the partial indexes, so a
#: scrape stays cheap however long the history is.
QUEUE_DEPTH = """
SELECT t.queue, s.name AS state, count(*) AS n
FROM {s}.task t JOIN {s}.state s ON s.code = t.status
WHERE t.status = 5 OR (t.status IN (4, 6) AND t.run_at <= now())
GROUP BY t.queue, s.name
"""

#: Seconds since the claimable task due longest became due, per queue with QUEUED or RETRY
#: tasks (0 when none of them is due yet): the workers' lag, as ``queue_stats.oldest_due_age``.
QUEUE_OLDEST_DUE = """
SELECT queue,
       COALESCE(extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now())), 0)::float8
         AS seconds
FROM {s}.task WHERE status IN (4, 6)
GROUP BY queue
"""

#: Live workers, plus stopped and lost ones seen within ``recent`` seconds (all when NULL).
WORKERS = """
SELECT * FROM {s}.worker_status
WHERE state = 'alive' OR %(recent)s::float8 IS NULL
   OR heartbeat_at > now() - %(recent)s::float8 * interval '1 second'
ORDER BY state = 'alive' DESC, started_at DESC
"""

#: Workers by state (alive, stopped, lost): live ones, plus those seen within ``recent`` seconds.
WORKER_COUNTS = """
SELECT state, count(*)::integer AS n FROM {s}.worker_status
WHERE state = 'alive' OR heartbeat_at > now() - %(recent)s::float8 * interval '1 second'
GROUP BY state
"""

STUCK_TASKS = "SELECT * FROM {s}.stuck_tasks ORDER BY since"

#: The filters of the task list (each NULL means "any"): states, jobs, queues, ``since``
#: (seconds before now() of the last change: end, else start, else queue time) and ``args``
#: (a JSON object the task's kwargs contain, ``@>``).
TASK_FILTERS = """
WHERE (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
  AND (%(jobs)s::text[] IS NULL OR name = ANY(%(jobs)s::text[]))
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND (%(since)s::float8 IS NULL
       OR COALESCE(time_ended, time_started, time_queued)
          >= now() - %(since)s::float8 * interval '1 second')
  AND (%(args)s::jsonb IS NULL OR kwargs @> %(args)s::jsonb)
"""

#: The orders the task list can be sorted in, by name: latest change first (the default) or
#: last, latest queued first or last. Ties are broken by id so pages never overlap.
TASK_ORDERS = {
    "changed": "COALESCE(time_ended, time_started, time_queued) DESC, id",
    "changed_asc": "COALESCE(time_ended, time_started, time_queued), id",
    "queued": "time_queued DESC, id",
    "queued_asc": "time_queued, id",
}

#: The states whose tasks the partial indexes of live tasks hold (``task_lock_id_live``,
#: ``task_claimable_job``, ``task_started_worker``).
LIVE_STATES = frozenset({"QUEUED", "STARTED", "RETRY"})

#: What the task list reads when every state asked for is live: the live rows first, through
#: those partial indexes (``OFFSET 0`` keeps PostgreSQL from merging the subquery into the
#: list's order, which would walk the whole history by ``task_changed``: 5-6 s on 5 million
#: finished tasks), then the filters and the order on those few.
LIVE_SOURCE = "(SELECT * FROM {s}.task_state WHERE status IN (4, 5, 6) OFFSET 0) AS live"

#: What the task list and its count read with an arguments filter when finished states may
#: match: the finished rows and the live ones (as :data:`LIVE_SOURCE`) apart, so that
#: PostgreSQL can find the finished ones through the index an operator may add for searching
#: the history's arguments (``task_ended_kwargs``, docs/guides/operations.md). Without it, it
#: reads what the whole view would.
SPLIT_SOURCE = (
    "(SELECT * FROM {s}.task_state WHERE status IN (1, 2, 3)"
    " UNION ALL SELECT * FROM (SELECT * FROM {s}.task_state WHERE status IN (4, 5, 6) OFFSET 0)"
    " AS live) AS split"
)

#: The columns of a task list row.
LIST_COLUMNS = """
SELECT id::text AS id, name, queue, state, priority, attempts, worker, time_queued, run_at,
       time_started, time_ended, wait_seconds, run_seconds, error
"""

#: One page of tasks by filters (:data:`TASK_FILTERS`), in one of :data:`TASK_ORDERS`, from
#: ``{source}``: the view ``task_state`` or :data:`LIVE_SOURCE`.
LIST_TASKS = (
    LIST_COLUMNS
    + "FROM {source}"
    + TASK_FILTERS
    + """ORDER BY {order}
LIMIT %(limit)s OFFSET %(offset)s::integer
"""
)

#: The change time of a task (end, else start, else queue time), which ``task_changed`` holds.
CHANGED = "COALESCE(time_ended, time_started, time_queued)"

#: One page of tasks latest queued first (order ``queued``) when finished tasks may match,
#: mostly without sorting the whole table (2-3 s on 5 million finished tasks). A task changes
#: after it is queued (``time_queued`` <= its change time). So when the ``sample`` tasks
#: changed last (read in order through ``task_changed``) hold ``depth + 1`` tasks (the page's
#: end) queued at ``low`` or later, and the last of them changed before ``low``, every task of
#: the page is in the sample: the page is sorted out of it. Otherwise (many tasks of the
#: sample were queued long before they changed: a long backlog drained late) the whole
#: filtered table is sorted, as the other orders' plain form would. Exact either way for the
#: rows pgqueue writes; a row written by hand that started or ended before it was queued may
#: be missed.
QUEUED_LATEST = (
    "WITH recent AS ("
    + LIST_COLUMNS
    + f", {CHANGED} AS changed FROM {{s}}.task_state"
    + TASK_FILTERS
    + f"ORDER BY {CHANGED} DESC, id LIMIT %(sample)s::integer),"
    + """
bound AS (SELECT time_queued AS low FROM recent
          ORDER BY time_queued DESC LIMIT 1 OFFSET %(depth)s::integer),
covered AS (SELECT (SELECT count(*) FROM recent) < %(sample)s::integer
                   OR (SELECT low FROM bound) > (SELECT min(changed) FROM recent) AS yes)
SELECT * FROM (
  ("""
    + LIST_COLUMNS
    + """FROM recent WHERE (SELECT yes FROM covered)
   ORDER BY time_queued DESC, id LIMIT %(limit)s OFFSET %(offset)s::integer)
  UNION ALL
  ("""
    + LIST_COLUMNS
    + "FROM {s}.task_state"
    + TASK_FILTERS
    + """  AND NOT (SELECT yes FROM covered)
   ORDER BY time_queued DESC, id LIMIT %(limit)s OFFSET %(offset)s::integer)
) page
ORDER BY time_queued DESC, id
"""
)

#: One page of tasks oldest queued first (order ``queued_asc``) when finished tasks may match:
#: the first ``end`` (the page's end) finished tasks by queue time and the first ``end`` live
#: ones (as :data:`LIVE_SOURCE` reads them), then the page out of those. With the index of
#: finished tasks by queue time an operator may add (``task_ended_queued``,
#: docs/guides/operations.md), the first part reads ``end`` entries of it; without, it sorts
#: the finished tasks as the plain form would.
QUEUED_OLDEST = (
    "SELECT * FROM (("
    + LIST_COLUMNS
    + "FROM {s}.task_state"
    + TASK_FILTERS
    + """  AND status IN (1, 2, 3)
ORDER BY time_queued, id LIMIT %(end)s::integer)
UNION ALL ("""
    + LIST_COLUMNS
    + "FROM "
    + LIVE_SOURCE
    + TASK_FILTERS
    + """ORDER BY time_queued, id LIMIT %(end)s::integer)) AS page
ORDER BY time_queued, id
LIMIT %(limit)s OFFSET %(offset)s::integer
"""
)

#: How many of the tasks changed last :data:`QUEUED_LATEST` samples, per task up to the
#: page's end (and at least :data:`QUEUED_SAMPLE_MIN`): the more, the fewer long-waiting
#: tasks among them can pull ``low`` back.
QUEUED_SAMPLE_PER_ROW = 4

#: The smallest sample of :data:`QUEUED_LATEST`.
QUEUED_SAMPLE_MIN = 1000

#: The largest sample of :data:`QUEUED_LATEST`: a page further on sorts every matching task.
QUEUED_SAMPLE_MAX = 100_000

#: PostgreSQL's largest ``integer``: the most rows a page's end can count.
INT_MAX = 2**31 - 1

#: How many tasks match the filters, counted up to ``cap`` rows only, so a page of a table of
#: millions stays fast (the list says "10,000+").
COUNT_TASKS = (
    "SELECT count(*)::integer AS n FROM (SELECT 1 FROM {source}"
    + TASK_FILTERS
    + "LIMIT %(cap)s::integer) capped"
)

#: How full PostgreSQL's NOTIFY queue is (0..1): shown by ``pgqueue status``, the dashboard and
#: the metrics (F27; see revision pgqueue_0005_contract).
NOTIFY_QUEUE_USAGE = "SELECT pg_notification_queue_usage()::float8 AS usage"


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

#: Ids of the tasks whose id lies in [low, high] (the UUIDs a prefix spans), in order: a range
#: scan of the primary key, however many tasks there are.
TASKS_BY_PREFIX = """
SELECT id::text AS id FROM {s}.task
WHERE id BETWEEN %(low)s::uuid AND %(high)s::uuid
ORDER BY id
LIMIT %(limit)s::integer
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

#: Give a FAILURE or REVOKED task ``more`` attempts (its next ``more`` runs may be retried
#: automatically: ``max_retries`` becomes attempts + more - 1 unless already higher) and queue
#: it again as :data:`RETRY_TASK` does.
GRANT_ATTEMPTS = """
UPDATE {s}.task
SET max_retries = GREATEST(max_retries, attempts + %(more)s::integer - 1),
    status = 6, time_queued = now(), run_at = now(), time_started = NULL, time_ended = NULL,
    result = NULL, worker = NULL, revoke_requested_at = NULL
WHERE id = %(id)s::uuid AND status IN (2, 3)
RETURNING id::text AS id
"""

#: Make a QUEUED or RETRY task that waits for its ``run_at`` due now.
RUN_NOW = """
UPDATE {s}.task SET run_at = now()
WHERE id = %(id)s::uuid AND status IN (4, 6) AND run_at > now()
RETURNING id::text AS id
"""

#: Queue again, as :data:`RETRY_TASK`, at most ``limit`` FAILURE tasks of the given jobs and
#: queues (NULL: any): one per lock_id, and none whose lock_id a live task holds, so the bulk
#: retry never trips the unique index of non-overlapping jobs.
RETRY_FAILED = """
WITH picked AS (
    SELECT DISTINCT ON (COALESCE(t.lock_id, t.id::text)) t.id
    FROM {s}.task t
    WHERE t.status = 2
      AND (%(jobs)s::text[] IS NULL OR t.name = ANY(%(jobs)s::text[]))
      AND (%(queues)s::text[] IS NULL OR t.queue = ANY(%(queues)s::text[]))
      AND (t.lock_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM {s}.task h WHERE h.lock_id = t.lock_id AND h.status IN (4, 5, 6)))
    ORDER BY COALESCE(t.lock_id, t.id::text), t.time_ended DESC
    LIMIT %(limit)s::integer
)
UPDATE {s}.task t
SET status = 6, time_queued = now(), run_at = now(), time_started = NULL, time_ended = NULL,
    result = NULL, worker = NULL, revoke_requested_at = NULL
FROM picked WHERE t.id = picked.id AND t.status = 2
RETURNING t.id::text AS id
"""

#: The earlier attempts of a task, first first (revision pgqueue_0008_dashboard).
TASK_ATTEMPTS = """
SELECT a.attempt, s.name AS state, a.worker, a.time_started, a.time_ended,
       extract(epoch FROM a.time_ended - a.time_started)::float8 AS run_seconds,
       a.error, a.traceback
FROM {s}.task_attempt a JOIN {s}.state s ON s.code = a.status
WHERE a.task_id = %(id)s::uuid
ORDER BY a.id
"""

#: One line of the audit trail.
RECORD_ACTION = """
INSERT INTO {s}.operator_action (actor, action, task_id, detail)
VALUES (%(actor)s, %(action)s, %(task_id)s::uuid, %(detail)s::jsonb)
"""

#: The latest ``limit`` lines of the audit trail, newest first.
LIST_ACTIONS = """
SELECT id, at, actor, action, task_id::text AS task_id, detail
FROM {s}.operator_action ORDER BY id DESC LIMIT %(limit)s::integer
"""

#: The live task holding the lock_id of task ``id``, if any.
LOCK_HOLDER = """
SELECT h.id::text AS id, s.name AS state
FROM {s}.task t
JOIN {s}.task h ON h.lock_id = t.lock_id AND h.status IN (4, 5, 6) AND h.id <> t.id
JOIN {s}.state s ON s.code = h.status
WHERE t.id = %(id)s::uuid
"""

#: Queues that have live tasks or running workers (for following their events).
QUEUE_NAMES = """
SELECT DISTINCT queue FROM {s}.task WHERE status IN (4, 5, 6)
UNION
SELECT unnest(queues) FROM {s}.worker WHERE stopped_at IS NULL
"""


class DepthRow(TypedDict):
    """Live tasks of one queue in one state."""

    queue: str
    state: str
    n: int


class LagRow(TypedDict):
    """How long the claimable task of one queue that is due longest has been due."""

    queue: str
    seconds: float


class StateCountRow(TypedDict):
    """How many rows are in one state."""

    state: str
    n: int


class HolderRow(TypedDict):
    """The live task holding a lock_id, and its state name."""

    id: str
    state: str


def _filters(
    states: list[str] | None,
    jobs: list[str] | None,
    queues: list[str] | None,
    since: float | None,
    args: str | None,
) -> dict[str, Any]:
    return {"states": states, "jobs": jobs, "queues": queues, "since": since, "args": args}


def _all_live(states: list[str] | None) -> bool:
    """Whether ``states`` names live states only (QUEUED, STARTED, RETRY)."""
    return bool(states) and LIVE_STATES.issuperset(states or ())


def _from(template: str, states: list[str] | None, *, split: bool) -> str:
    """``template`` reading :data:`LIVE_SOURCE` when ``states`` are all live, else
    :data:`SPLIT_SOURCE` when ``split``, else the whole view ``task_state``."""
    if _all_live(states):
        return template.replace("{source}", LIVE_SOURCE)
    return template.replace("{source}", SPLIT_SOURCE if split else "{s}.task_state")


def _count(found: list[Any], count: int) -> int:
    return int(found[0]["n"])


def _ids(found: list[Any], count: int) -> list[str]:
    return [row["id"] for row in found]


def _queue_names(found: list[Any], count: int) -> list[str]:
    return [row["queue"] for row in found]


class OperatorOps(StoreBase):
    """Operators' reads and actions (see the module docstring)."""

    def queue_stats(self) -> Op[list[Row]]:
        """Rows of ``queue_stats``: counts per queue and job."""
        return Op(self._sql(QUEUE_STATS), {}, rows)

    def queue_overview(self) -> Op[list[Row]]:
        """Rows of ``queue_overview``: live counts and the last hour per queue and job."""
        return Op(self._sql(QUEUE_OVERVIEW), {}, rows)

    def queue_throughput_recent(self) -> Op[list[Row]]:
        """``queue_throughput``'s rows for the last minute and five minutes (see
        :data:`QUEUE_THROUGHPUT_RECENT`)."""
        return Op(self._sql(QUEUE_THROUGHPUT_RECENT), {}, rows)

    def queue_throughput(self) -> Op[list[Row]]:
        """Rows of ``queue_throughput``: per queue, job and period."""
        return Op(self._sql(QUEUE_THROUGHPUT), {}, rows)

    def queue_timeline(self) -> Op[list[Row]]:
        """Rows of ``queue_timeline``: per queue and minute of the last hour."""
        return Op(self._sql(QUEUE_TIMELINE), {}, rows)

    def queue_activity(self, *, step: float, buckets: int) -> Op[list[Row]]:
        """Finished and failed tasks per queue in each of the last ``buckets`` periods of
        ``step`` seconds (see :data:`QUEUE_ACTIVITY`), by queue and period."""
        return Op(self._sql(QUEUE_ACTIVITY), {"step": step, "buckets": buckets}, rows)

    def roll_up_ended(self) -> Op[int]:
        """Sum up the closed minutes of finished tasks into ``ended_per_minute`` (see
        :data:`ROLL_UP_ENDED`); the result is how many minute rows were written (0 also when
        another roll-up was running)."""
        params = {"margin": ROLLUP_MARGIN, "keep": ROLLUP_KEEP}
        return Op(self._sql(ROLL_UP_ENDED), params, _count)

    def queue_depth(self) -> Op[list[DepthRow]]:
        """Live tasks per queue and state (see :data:`QUEUE_DEPTH`)."""
        return Op(self._sql(QUEUE_DEPTH), {}, rows)

    def queue_oldest_due(self) -> Op[list[LagRow]]:
        """Per queue with claimable tasks, seconds since the one due longest became due (see
        :data:`QUEUE_OLDEST_DUE`)."""
        return Op(self._sql(QUEUE_OLDEST_DUE), {}, rows)

    def workers(self, *, recent: float | None) -> Op[list[Row]]:
        """Rows of ``worker_status``: live workers and those seen within ``recent`` seconds
        (None: all)."""
        return Op(self._sql(WORKERS), {"recent": recent}, rows)

    def worker_counts(self, *, recent: float) -> Op[list[StateCountRow]]:
        """Workers per state: live ones and those seen within ``recent`` seconds (see
        :data:`WORKER_COUNTS`)."""
        return Op(self._sql(WORKER_COUNTS), {"recent": recent}, rows)

    def stuck_tasks(self) -> Op[list[Row]]:
        """Rows of ``stuck_tasks``."""
        return Op(self._sql(STUCK_TASKS), {}, rows)

    def list_tasks(
        self,
        *,
        states: list[str] | None,
        jobs: list[str] | None,
        queues: list[str] | None,
        since: float | None,
        limit: int,
        offset: int = 0,
        args: str | None = None,
        order: str = "changed",
    ) -> Op[list[Row]]:
        """One page of tasks by filters (None: any; ``since`` in seconds; ``args`` a JSON
        object the kwargs contain), ``limit`` rows from ``offset``, in the order named
        ``order`` (a key of :data:`TASK_ORDERS`; KeyError otherwise)."""
        params = {
            **_filters(states, jobs, queues, since, args),
            "limit": limit,
            "offset": offset,
        }
        template = LIST_TASKS.replace("{order}", TASK_ORDERS[order])
        end = min(offset + limit, INT_MAX)  # past it, the page is empty anyway
        if order == "queued" and not _all_live(states):
            sample = min(max(QUEUED_SAMPLE_PER_ROW * end, QUEUED_SAMPLE_MIN), QUEUED_SAMPLE_MAX)
            params.update(sample=sample, depth=end - 1)
            return Op(self._sql(QUEUED_LATEST), params, rows)
        if order == "queued_asc" and not _all_live(states):
            params.update(end=end)
            return Op(self._sql(QUEUED_OLDEST), params, rows)
        return Op(self._sql(_from(template, states, split=args is not None)), params, rows)

    def count_tasks(
        self,
        *,
        states: list[str] | None,
        jobs: list[str] | None,
        queues: list[str] | None,
        since: float | None,
        args: str | None,
        cap: int,
    ) -> Op[int]:
        """How many tasks match the filters of :meth:`list_tasks`, counting at most ``cap``."""
        params = {**_filters(states, jobs, queues, since, args), "cap": cap}
        return Op(self._sql(_from(COUNT_TASKS, states, split=args is not None)), params, _count)

    def task_detail(self, *, id: str, preview: int | None) -> Op[Row | None]:
        """Every column of task ``id`` (``task_state``), its long values cut to ``preview``
        characters (None: whole); None when it does not exist."""
        return Op(self._sql(TASK_DETAIL), {"id": id, "preview": preview}, first)

    def tasks_by_prefix(self, *, low: str, high: str, limit: int) -> Op[list[str]]:
        """Ids of at most ``limit`` tasks with ids between the UUIDs ``low`` and ``high``."""
        return Op(self._sql(TASKS_BY_PREFIX), {"low": low, "high": high, "limit": limit}, _ids)

    def notify_queue_usage(self) -> Op[float]:
        """How full PostgreSQL's NOTIFY queue is, 0..1 (see :data:`NOTIFY_QUEUE_USAGE`)."""
        return Op(self._sql(NOTIFY_QUEUE_USAGE), {}, _usage)

    def retry_task(self, *, id: str) -> Op[bool]:
        """Queue FAILURE or REVOKED task ``id`` again; False when it is in another state.
        Raises ``psycopg.errors.UniqueViolation`` when a live task holds its lock_id."""
        return Op(self._sql(RETRY_TASK), {"id": id}, any_row)

    def grant_attempts(self, *, id: str, more: int) -> Op[bool]:
        """Queue FAILURE or REVOKED task ``id`` again with ``more`` attempts (see
        :data:`GRANT_ATTEMPTS`); False when it is in another state. Raises
        ``psycopg.errors.UniqueViolation`` when a live task holds its lock_id."""
        return Op(self._sql(GRANT_ATTEMPTS), {"id": id, "more": more}, any_row)

    def retry_failed(
        self, *, jobs: list[str] | None, queues: list[str] | None, limit: int
    ) -> Op[list[str]]:
        """Queue again at most ``limit`` FAILURE tasks of ``jobs`` in ``queues`` (None: any);
        the ids of those queued (see :data:`RETRY_FAILED`)."""
        params = {"jobs": jobs, "queues": queues, "limit": limit}
        return Op(self._sql(RETRY_FAILED), params, _ids)

    def run_now(self, *, id: str) -> Op[bool]:
        """Make waiting task ``id`` due now; False when it is not waiting for its run_at."""
        return Op(self._sql(RUN_NOW), {"id": id}, any_row)

    def task_attempts(self, *, id: str) -> Op[list[Row]]:
        """The earlier attempts of task ``id``, oldest first (see :data:`TASK_ATTEMPTS`)."""
        return Op(self._sql(TASK_ATTEMPTS), {"id": id}, rows)

    def record_action(
        self, *, actor: str, action: str, task_id: str | None, detail: str
    ) -> Op[None]:
        """Add a line to the audit trail (``detail``: a JSON object as text)."""
        params = {"actor": actor, "action": action, "task_id": task_id, "detail": detail}
        return Op(self._sql(RECORD_ACTION), params, nothing)

    def list_actions(self, *, limit: int) -> Op[list[Row]]:
        """The latest ``limit`` lines of the audit trail, newest first."""
        return Op(self._sql(LIST_ACTIONS), {"limit": limit}, rows)

    def lock_holder(self, *, id: str) -> Op[HolderRow | None]:
        """The live task holding the lock_id of task ``id``, if any."""
        return Op(self._sql(LOCK_HOLDER), {"id": id}, first)

    def queue_names(self) -> Op[list[str]]:
        """Queues that have live tasks or running workers (unordered)."""
        return Op(self._sql(QUEUE_NAMES), {}, _queue_names)


def _usage(found: list[Any], count: int) -> float:
    """The one ``usage`` value :data:`NOTIFY_QUEUE_USAGE` returns."""
    return float(found[0]["usage"])

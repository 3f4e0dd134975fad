"""A fast queue overview on a long history, and schedules that can be triggered without a
scheduler (issue 18).

Revision ID: pgqueue_0013_queue_stats
Revises: pgqueue_0012_fast_path
Create Date: 2026-12-07

* **``queue_overview``** (view): per queue and job, the live tasks exactly as ``queue_stats``
  counts them (queued, started, retry, due, oldest_queued_age, oldest_due_age) and the tasks
  that finished within the last hour by state. ``queue_stats`` counts every row of the task
  table, finished ones included, so its cost grows with the history kept (2.2 s on 1,000,000
  finished tasks, 6 s on 5,000,000); ``queue_overview`` reads only live tasks, through the
  partial indexes ``task_claimable`` (QUEUED and RETRY tasks free to run),
  ``task_waiting`` (below) and ``task_started_worker`` (STARTED), and the last hour of
  ``task_time_ended``: its cost follows the live tasks and the finish rate, not the history.
  The dashboard's queues page and ``pgqueue status`` read it. ``queue_stats`` keeps its
  meaning (exact totals of every state, whole table) for whoever needs totals.
* **``task_waiting``** (index): QUEUED and RETRY tasks still waiting for a workflow parent
  (``waiting_on > 0``), which ``task_claimable`` leaves out. Only such tasks are in it, so a
  task without parents costs it nothing. Building it reads the task table once, blocking
  writes meanwhile: on a large table, create it beforehand with ``CREATE INDEX CONCURRENTLY``
  under the same name and definition, and this revision skips it.
* **``schedule.task_options``**: the parameters of a tick's task (queue, priority, the lock
  of a job that cannot overlap, expiry, retries, flow-control limits) as the scheduler that
  defined the schedule worked them out from its job. An operator's trigger (``pgqueue
  schedule trigger``, the dashboard) queues the task itself from them, in the transaction of
  its audit line, instead of asking a scheduler to: it runs on any worker consuming the
  queue, whether or not one runs ``--schedule-periodic``. NULL until a scheduler of this
  version defines the schedule; a trigger then falls back to the request a scheduler serves
  (``trigger_requested_at``, revision pgqueue_0009_schedules).
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0013_queue_stats"
down_revision: str | None = "pgqueue_0012_fast_path"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE INDEX IF NOT EXISTS task_waiting ON {s}.task (queue, name)
    WHERE status IN (4, 6) AND waiting_on > 0;
COMMENT ON INDEX {s}.task_waiting IS
    'QUEUED and RETRY tasks waiting for a workflow parent (not in task_claimable): what queue_overview counts of them';

-- Each branch of the UNION ALL matches one partial index's predicate, so each is an index
-- scan of live (or recently finished) tasks only.
CREATE VIEW {s}.queue_overview AS
SELECT l.queue, l.name,
       count(*) FILTER (WHERE l.status = 6) AS queued,
       count(*) FILTER (WHERE l.status = 5) AS started,
       count(*) FILTER (WHERE l.status = 4) AS retry,
       count(*) FILTER (WHERE l.status IN (4, 6) AND l.run_at <= now()) AS due,
       now() - min(l.time_queued) FILTER (WHERE l.status IN (4, 6)) AS oldest_queued_age,
       now() - min(l.run_at) FILTER (WHERE l.status IN (4, 6) AND l.run_at <= now()) AS oldest_due_age,
       count(*) FILTER (WHERE l.status = 1) AS success_last_hour,
       count(*) FILTER (WHERE l.status = 2) AS failure_last_hour,
       count(*) FILTER (WHERE l.status = 3) AS revoked_last_hour
FROM (
    SELECT t.queue, t.name, t.status, t.run_at, t.time_queued
    FROM {s}.task t WHERE t.status IN (4, 6) AND t.waiting_on = 0
    UNION ALL
    SELECT t.queue, t.name, t.status, t.run_at, t.time_queued
    FROM {s}.task t WHERE t.status IN (4, 6) AND t.waiting_on > 0
    UNION ALL
    SELECT t.queue, t.name, t.status, t.run_at, t.time_queued
    FROM {s}.task t WHERE t.status = 5
    UNION ALL
    SELECT t.queue, t.name, t.status, NULL, NULL
    FROM {s}.task t WHERE t.status IN (1, 2, 3) AND t.time_ended > now() - interval '1 hour'
) l
GROUP BY l.queue, l.name;
COMMENT ON VIEW {s}.queue_overview IS 'Per queue and job with live tasks or tasks finished within the last hour: the live ones counted as in queue_stats, the finished ones of the last hour by state. Reads live tasks and the last hour through partial indexes, so its cost does not grow with the history kept (queue_stats reads every row)';
COMMENT ON COLUMN {s}.queue_overview.queue IS 'Queue name';
COMMENT ON COLUMN {s}.queue_overview.name IS 'Job name';
COMMENT ON COLUMN {s}.queue_overview.queued IS 'Tasks QUEUED (including those whose run_at is still ahead), as queue_stats.queued';
COMMENT ON COLUMN {s}.queue_overview.started IS 'Tasks STARTED (running now), as queue_stats.started';
COMMENT ON COLUMN {s}.queue_overview.retry IS 'Tasks in RETRY, waiting for another attempt, as queue_stats.retry';
COMMENT ON COLUMN {s}.queue_overview.due IS 'QUEUED or RETRY tasks whose run_at has passed, as queue_stats.due';
COMMENT ON COLUMN {s}.queue_overview.oldest_queued_age IS 'now() - time_queued of the oldest QUEUED or RETRY task; NULL when none waits';
COMMENT ON COLUMN {s}.queue_overview.oldest_due_age IS 'now() - run_at of the claimable task that has been due longest (the workers'' lag); NULL when none is due';
COMMENT ON COLUMN {s}.queue_overview.success_last_hour IS 'Tasks that ended in SUCCESS within the last hour (queue_stats.success counts all kept)';
COMMENT ON COLUMN {s}.queue_overview.failure_last_hour IS 'Tasks that ended in FAILURE within the last hour (queue_stats.failure counts all kept)';
COMMENT ON COLUMN {s}.queue_overview.revoked_last_hour IS 'Tasks that ended REVOKED within the last hour (queue_stats.revoked counts all kept)';
COMMENT ON VIEW {s}.queue_stats IS 'Per queue and job: how many tasks are in each state, finished ones included, and how old the oldest waiting one is. Reads the whole task table, so it slows down as the history grows (seconds on millions of finished tasks): queue_overview gives the live counts and the last hour cheaply';

-- Same columns and meaning as revision 0004's; the tasks are now read through the partial
-- index of finished tasks by end time (only the last hour) instead of a whole-table scan.
CREATE OR REPLACE VIEW {s}.queue_throughput AS
SELECT t.queue, t.name, p.period,
       count(*) AS finished,
       count(*) FILTER (WHERE t.status = 1) AS succeeded,
       count(*) FILTER (WHERE t.status = 2) AS failed,
       count(*) FILTER (WHERE t.status = 3) AS revoked,
       (count(*) / extract(epoch FROM p.span))::float8 AS per_second,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.time_started - t.time_queued)::float8) AS wait_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM t.time_started - t.time_queued)::float8) AS wait_p95,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.time_ended - t.time_started)::float8) AS run_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM t.time_ended - t.time_started)::float8) AS run_p95
FROM (VALUES ('1 minute', interval '1 minute'), ('1 hour', interval '1 hour')) AS p(period, span)
JOIN (SELECT * FROM {s}.task
      WHERE status IN (1, 2, 3) AND time_ended > now() - interval '1 hour') t
  ON t.time_ended > now() - p.span
GROUP BY t.queue, t.name, p.period, p.span;

-- Same columns and meaning as revision 0004's. The tasks of the last hour are read through
-- partial indexes (finished ones by end time, live ones by state) instead of a whole-table
-- scan, and grouped once by the minutes each was queued, left the queue and ended, so the
-- passes that follow read a few rows per queue and minute instead of one per task.
CREATE OR REPLACE VIEW {s}.queue_timeline AS
WITH bounds AS (
    SELECT date_trunc('minute', now()) - interval '59 minutes' AS first
), tasks AS (
    SELECT t.queue, t.status, t.time_queued, t.time_started, t.time_ended FROM {s}.task t
    WHERE t.status IN (1, 2, 3)
      AND t.time_ended >= date_trunc('minute', now()) - interval '59 minutes'
    UNION ALL
    -- (a finished task has an end time; any without one is counted as revision 0004 did)
    SELECT t.queue, t.status, t.time_queued, t.time_started, t.time_ended FROM {s}.task t
    WHERE t.status IN (1, 2, 3) AND t.time_ended IS NULL
    UNION ALL
    SELECT t.queue, t.status, t.time_queued, t.time_started, t.time_ended FROM {s}.task t
    WHERE t.status IN (4, 6) AND t.waiting_on = 0
      AND (t.time_ended IS NULL OR t.time_ended >= date_trunc('minute', now()) - interval '59 minutes')
    UNION ALL
    SELECT t.queue, t.status, t.time_queued, t.time_started, t.time_ended FROM {s}.task t
    WHERE t.status IN (4, 6) AND t.waiting_on > 0
      AND (t.time_ended IS NULL OR t.time_ended >= date_trunc('minute', now()) - interval '59 minutes')
    UNION ALL
    SELECT t.queue, t.status, t.time_queued, t.time_started, t.time_ended FROM {s}.task t
    WHERE t.status = 5
      AND (t.time_ended IS NULL OR t.time_ended >= date_trunc('minute', now()) - interval '59 minutes')
), recent AS (
    -- date_bin of a minute is date_trunc('minute') without the time zone work (every zone's
    -- offset is whole minutes); "first" is written out, so this pass can run in parallel.
    SELECT r.queue,
           greatest(date_bin('1 minute', r.time_queued, timestamptz '2000-01-01'),
                    date_trunc('minute', now()) - interval '59 minutes') AS queued_minute,
           CASE WHEN COALESCE(r.time_started, r.time_ended) IS NOT NULL
                THEN greatest(date_bin('1 minute', COALESCE(r.time_started, r.time_ended),
                                       timestamptz '2000-01-01'),
                              date_trunc('minute', now()) - interval '59 minutes')
           END AS left_minute,
           CASE WHEN r.time_ended >= date_trunc('minute', now()) - interval '59 minutes'
                THEN date_bin('1 minute', r.time_ended, timestamptz '2000-01-01') END AS ended_minute,
           count(*) AS n, count(*) FILTER (WHERE r.status = 2) AS failed
    FROM tasks r
    GROUP BY 1, 2, 3, 4
), changes AS (
    SELECT queue, queued_minute AS minute, n AS delta, 0::bigint AS finished, 0::bigint AS failed
    FROM recent
    UNION ALL
    SELECT queue, left_minute, -n, 0, 0 FROM recent WHERE left_minute IS NOT NULL
    UNION ALL
    SELECT queue, ended_minute, 0, n, failed FROM recent WHERE ended_minute IS NOT NULL
), per_minute AS (
    SELECT queue, minute, sum(delta) AS delta, sum(finished) AS finished, sum(failed) AS failed
    FROM changes GROUP BY queue, minute
)
SELECT m.minute, q.queue,
       COALESCE(p.finished, 0)::bigint AS finished,
       COALESCE(p.failed, 0)::bigint AS failed,
       (sum(COALESCE(p.delta, 0)) OVER (PARTITION BY q.queue ORDER BY m.minute))::bigint AS depth
FROM bounds b
CROSS JOIN generate_series(b.first, b.first + interval '59 minutes', interval '1 minute') AS m(minute)
CROSS JOIN (SELECT DISTINCT queue FROM recent) q
LEFT JOIN per_minute p ON p.queue = q.queue AND p.minute = m.minute;

ALTER TABLE {s}.schedule ADD COLUMN task_options jsonb;
COMMENT ON COLUMN {s}.schedule.task_options IS
    'Parameters of a tick''s task (queue, priority, lock, expiry, retries, limits) as the scheduler defining the schedule worked them out from its job: an operator''s trigger queues the task from them without a scheduler. NULL until a scheduler of revision pgqueue_0013_queue_stats or later defines it';
"""

DOWNGRADE = r"""
-- Back to revision 0004's plans of the same two views.
CREATE OR REPLACE VIEW {s}.queue_throughput AS
SELECT t.queue, t.name, p.period,
       count(*) AS finished,
       count(*) FILTER (WHERE t.status = 1) AS succeeded,
       count(*) FILTER (WHERE t.status = 2) AS failed,
       count(*) FILTER (WHERE t.status = 3) AS revoked,
       (count(*) / extract(epoch FROM p.span))::float8 AS per_second,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.time_started - t.time_queued)::float8) AS wait_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM t.time_started - t.time_queued)::float8) AS wait_p95,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.time_ended - t.time_started)::float8) AS run_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM t.time_ended - t.time_started)::float8) AS run_p95
FROM (VALUES ('1 minute', interval '1 minute'), ('1 hour', interval '1 hour')) AS p(period, span)
JOIN {s}.task t ON t.status IN (1, 2, 3) AND t.time_ended > now() - p.span
GROUP BY t.queue, t.name, p.period, p.span;
CREATE OR REPLACE VIEW {s}.queue_timeline AS
-- One pass over the tasks: +1 to the depth in the minute a task was queued, -1 in the minute it
-- started (or ended unstarted), both clamped to the first minute; depth is the running sum.
WITH bounds AS (
    SELECT date_trunc('minute', now()) - interval '59 minutes' AS first
), recent AS (
    SELECT t.queue, t.status, t.time_queued, t.time_ended,
           COALESCE(t.time_started, t.time_ended) AS left_queue
    FROM {s}.task t, bounds b
    WHERE t.time_ended IS NULL OR t.time_ended >= b.first
), changes AS (
    SELECT r.queue, greatest(date_trunc('minute', r.time_queued), b.first) AS minute,
           1 AS delta, 0 AS finished, 0 AS failed
    FROM recent r, bounds b
    UNION ALL
    SELECT r.queue, greatest(date_trunc('minute', r.left_queue), b.first), -1, 0, 0
    FROM recent r, bounds b WHERE r.left_queue IS NOT NULL
    UNION ALL
    SELECT r.queue, date_trunc('minute', r.time_ended), 0, 1, (r.status = 2)::int
    FROM recent r, bounds b WHERE r.time_ended >= b.first
), per_minute AS (
    SELECT queue, minute, sum(delta) AS delta, sum(finished) AS finished, sum(failed) AS failed
    FROM changes GROUP BY queue, minute
)
SELECT m.minute, q.queue,
       COALESCE(p.finished, 0)::bigint AS finished,
       COALESCE(p.failed, 0)::bigint AS failed,
       (sum(COALESCE(p.delta, 0)) OVER (PARTITION BY q.queue ORDER BY m.minute))::bigint AS depth
FROM bounds b
CROSS JOIN generate_series(b.first, b.first + interval '59 minutes', interval '1 minute') AS m(minute)
CROSS JOIN (SELECT DISTINCT queue FROM recent) q
LEFT JOIN per_minute p ON p.queue = q.queue AND p.minute = m.minute;
ALTER TABLE {s}.schedule DROP COLUMN task_options;
COMMENT ON VIEW {s}.queue_stats IS 'Per queue and job: how many tasks are in each state and how old the oldest waiting one is (reads the whole task table)';
DROP VIEW {s}.queue_overview;
DROP INDEX {s}.task_waiting;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

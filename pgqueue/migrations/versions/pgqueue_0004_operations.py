"""Operator views: tasks with durations, queue statistics, throughput, workers, stuck tasks.

These views are pgqueue's stable SQL surface for operators: their names and columns keep their
meaning across releases (new columns may be added at the end). Every view and column carries a
comment, so ``\\d+ pgqueue.queue_stats`` in psql explains itself.

Revision ID: pgqueue_0004_operations
Revises: pgqueue_0003_integration
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0004_operations"
down_revision: str | None = "pgqueue_0003_integration"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
-- task_state keeps the columns revision 0001 gave it, in the same order; new ones follow.
CREATE OR REPLACE VIEW {s}.task_state AS
SELECT t.id, t.name, t.queue, s.name AS state, t.status, t.priority, t.attempts, t.worker,
       t.time_queued, t.run_at, t.time_started, t.time_ended, t.expiry,
       t.time_started - t.time_queued AS wait, t.time_ended - t.time_started AS run,
       t.error, t.kwargs, t.result,
       extract(epoch FROM t.time_started - t.time_queued)::float8 AS wait_seconds,
       extract(epoch FROM t.time_ended - t.time_started)::float8 AS run_seconds,
       CASE WHEN t.status IN (4, 6) AND t.run_at <= now() THEN now() - t.run_at END AS overdue,
       t.lock_id, t.max_retries, t.meta_params, t.traceback, t.revoke_requested_at
FROM {s}.task t JOIN {s}.state s ON s.code = t.status;
COMMENT ON VIEW {s}.task_state IS 'Every task with its state name and durations (wait = started - queued, run = ended - started); stable across releases';
COMMENT ON COLUMN {s}.task_state.id IS 'Task id (uuid)';
COMMENT ON COLUMN {s}.task_state.name IS 'Job name';
COMMENT ON COLUMN {s}.task_state.queue IS 'Queue the task waits in';
COMMENT ON COLUMN {s}.task_state.state IS 'State name (QUEUED, STARTED, RETRY, REVOKED, FAILURE, SUCCESS)';
COMMENT ON COLUMN {s}.task_state.status IS 'State code (6 QUEUED ... 1 SUCCESS), as stored in task.status';
COMMENT ON COLUMN {s}.task_state.priority IS 'Higher priorities are claimed first';
COMMENT ON COLUMN {s}.task_state.attempts IS 'How many times the task has been claimed';
COMMENT ON COLUMN {s}.task_state.worker IS 'Worker that claimed the task last (see worker_status)';
COMMENT ON COLUMN {s}.task_state.time_queued IS 'When the task was queued (database clock)';
COMMENT ON COLUMN {s}.task_state.run_at IS 'Earliest time a worker may claim it (queue time, delay or retry backoff)';
COMMENT ON COLUMN {s}.task_state.time_started IS 'When the last attempt started';
COMMENT ON COLUMN {s}.task_state.time_ended IS 'When the task reached a ready state (SUCCESS, FAILURE, REVOKED)';
COMMENT ON COLUMN {s}.task_state.expiry IS 'A task not started by then is REVOKED without running';
COMMENT ON COLUMN {s}.task_state.wait IS 'time_started - time_queued: how long the task waited for a worker (includes earlier attempts after a retry)';
COMMENT ON COLUMN {s}.task_state.run IS 'time_ended - time_started: how long the last attempt ran';
COMMENT ON COLUMN {s}.task_state.error IS 'Why the task failed, was revoked or will be retried';
COMMENT ON COLUMN {s}.task_state.kwargs IS 'Keyword arguments of the job call (JSON)';
COMMENT ON COLUMN {s}.task_state.result IS 'Return value (JSON) of a successful task';
COMMENT ON COLUMN {s}.task_state.wait_seconds IS 'wait in seconds (float), for arithmetic and percentiles';
COMMENT ON COLUMN {s}.task_state.run_seconds IS 'run in seconds (float), for arithmetic and percentiles';
COMMENT ON COLUMN {s}.task_state.overdue IS 'For QUEUED and RETRY tasks past run_at: how long they have been claimable without a worker taking them; else NULL';
COMMENT ON COLUMN {s}.task_state.lock_id IS 'Lock of a non-overlapping task; unique among live tasks';
COMMENT ON COLUMN {s}.task_state.max_retries IS 'How many attempts may follow the first one';
COMMENT ON COLUMN {s}.task_state.meta_params IS 'Extra JSON the caller attached to the task';
COMMENT ON COLUMN {s}.task_state.traceback IS 'Python traceback of the last failure';
COMMENT ON COLUMN {s}.task_state.revoke_requested_at IS 'When a revoke was asked for while the task ran (its worker stops it); NULL otherwise';

CREATE VIEW {s}.queue_stats AS
SELECT t.queue, t.name,
       count(*) FILTER (WHERE t.status = 6) AS queued,
       count(*) FILTER (WHERE t.status = 5) AS started,
       count(*) FILTER (WHERE t.status = 4) AS retry,
       count(*) FILTER (WHERE t.status = 3) AS revoked,
       count(*) FILTER (WHERE t.status = 2) AS failure,
       count(*) FILTER (WHERE t.status = 1) AS success,
       count(*) FILTER (WHERE t.status IN (4, 6) AND t.run_at <= now()) AS due,
       now() - min(t.time_queued) FILTER (WHERE t.status IN (4, 6)) AS oldest_queued_age,
       now() - min(t.run_at) FILTER (WHERE t.status IN (4, 6) AND t.run_at <= now()) AS oldest_due_age
FROM {s}.task t
GROUP BY t.queue, t.name;
COMMENT ON VIEW {s}.queue_stats IS 'Per queue and job: how many tasks are in each state and how old the oldest waiting one is (reads the whole task table)';
COMMENT ON COLUMN {s}.queue_stats.queue IS 'Queue name';
COMMENT ON COLUMN {s}.queue_stats.name IS 'Job name';
COMMENT ON COLUMN {s}.queue_stats.queued IS 'Tasks QUEUED (including those whose run_at is still ahead)';
COMMENT ON COLUMN {s}.queue_stats.started IS 'Tasks STARTED (running now)';
COMMENT ON COLUMN {s}.queue_stats.retry IS 'Tasks in RETRY, waiting for another attempt';
COMMENT ON COLUMN {s}.queue_stats.revoked IS 'Tasks REVOKED (kept until pruned)';
COMMENT ON COLUMN {s}.queue_stats.failure IS 'Tasks that ended in FAILURE (kept until pruned)';
COMMENT ON COLUMN {s}.queue_stats.success IS 'Tasks that ended in SUCCESS (kept until pruned)';
COMMENT ON COLUMN {s}.queue_stats.due IS 'QUEUED or RETRY tasks whose run_at has passed: a worker could claim them now';
COMMENT ON COLUMN {s}.queue_stats.oldest_queued_age IS 'now() - time_queued of the oldest QUEUED or RETRY task; NULL when none waits';
COMMENT ON COLUMN {s}.queue_stats.oldest_due_age IS 'now() - run_at of the claimable task that has been due longest: the lag of the workers; NULL when none is due';

CREATE VIEW {s}.queue_throughput AS
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
COMMENT ON VIEW {s}.queue_throughput IS 'Per queue, job and period (last minute, last hour): tasks finished, rate and p50/p95 wait and run times in seconds; a row only where something finished';
COMMENT ON COLUMN {s}.queue_throughput.queue IS 'Queue name';
COMMENT ON COLUMN {s}.queue_throughput.name IS 'Job name';
COMMENT ON COLUMN {s}.queue_throughput.period IS 'The window, ending now: ''1 minute'' or ''1 hour''';
COMMENT ON COLUMN {s}.queue_throughput.finished IS 'Tasks that reached SUCCESS, FAILURE or REVOKED within the period';
COMMENT ON COLUMN {s}.queue_throughput.succeeded IS 'Of those, SUCCESS';
COMMENT ON COLUMN {s}.queue_throughput.failed IS 'Of those, FAILURE';
COMMENT ON COLUMN {s}.queue_throughput.revoked IS 'Of those, REVOKED';
COMMENT ON COLUMN {s}.queue_throughput.per_second IS 'finished divided by the length of the period in seconds';
COMMENT ON COLUMN {s}.queue_throughput.wait_p50 IS 'Median of time_started - time_queued, seconds, over tasks that started (revoked-before-start tasks are left out)';
COMMENT ON COLUMN {s}.queue_throughput.wait_p95 IS '95th percentile (interpolated) of time_started - time_queued, seconds';
COMMENT ON COLUMN {s}.queue_throughput.run_p50 IS 'Median of time_ended - time_started, seconds';
COMMENT ON COLUMN {s}.queue_throughput.run_p95 IS '95th percentile (interpolated) of time_ended - time_started, seconds';

CREATE VIEW {s}.queue_timeline AS
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
COMMENT ON VIEW {s}.queue_timeline IS 'Per queue and minute over the last hour: tasks finished and the queue depth, rebuilt from task timestamps (pruned tasks and earlier attempts of retried tasks are not seen)';
COMMENT ON COLUMN {s}.queue_timeline.minute IS 'Start of the minute (database clock, truncated)';
COMMENT ON COLUMN {s}.queue_timeline.queue IS 'Queue name';
COMMENT ON COLUMN {s}.queue_timeline.finished IS 'Tasks that reached a ready state within the minute';
COMMENT ON COLUMN {s}.queue_timeline.failed IS 'Tasks that ended in FAILURE within the minute';
COMMENT ON COLUMN {s}.queue_timeline.depth IS 'Tasks queued but not yet started at the end of the minute';

CREATE VIEW {s}.worker_status AS
SELECT w.id, w.hostname, w.pid, w.queues, w.backlog, w.lease_seconds,
       CASE WHEN w.stopped_at IS NOT NULL THEN 'stopped'
            WHEN w.heartbeat_at + w.lease_seconds * interval '1 second' > now() THEN 'alive'
            ELSE 'lost' END AS state,
       w.started_at, w.heartbeat_at, now() - w.heartbeat_at AS heartbeat_age, w.stopped_at,
       COALESCE(r.running, 0) AS running, COALESCE(r.task_ids, '{}') AS task_ids,
       COALESCE(r.jobs, '{}') AS jobs
FROM {s}.worker w
LEFT JOIN LATERAL (
    SELECT count(*) AS running, array_agg(t.id ORDER BY t.time_started) AS task_ids,
           array_agg(DISTINCT t.name) AS jobs
    FROM {s}.task t WHERE t.status = 5 AND t.worker = w.id
) r ON true;
COMMENT ON VIEW {s}.worker_status IS 'Every registered worker process: alive, stopped or lost, its heartbeat age and the tasks it runs';
COMMENT ON COLUMN {s}.worker_status.id IS 'Worker identity (host:pid:random), as in task.worker';
COMMENT ON COLUMN {s}.worker_status.hostname IS 'Host the worker runs on';
COMMENT ON COLUMN {s}.worker_status.pid IS 'Operating-system process id';
COMMENT ON COLUMN {s}.worker_status.queues IS 'Queues the worker claims from';
COMMENT ON COLUMN {s}.worker_status.backlog IS 'How many tasks it runs at once';
COMMENT ON COLUMN {s}.worker_status.lease_seconds IS 'Seconds after its last heartbeat after which it counts as lost';
COMMENT ON COLUMN {s}.worker_status.state IS '''alive'' (heartbeat within the lease), ''stopped'' (stopped cleanly) or ''lost'' (no heartbeat within the lease: crashed or cut off)';
COMMENT ON COLUMN {s}.worker_status.started_at IS 'When the worker registered';
COMMENT ON COLUMN {s}.worker_status.heartbeat_at IS 'Its last heartbeat';
COMMENT ON COLUMN {s}.worker_status.heartbeat_age IS 'now() - heartbeat_at';
COMMENT ON COLUMN {s}.worker_status.stopped_at IS 'When it stopped cleanly; NULL while running or after a crash';
COMMENT ON COLUMN {s}.worker_status.running IS 'How many tasks are STARTED under this worker';
COMMENT ON COLUMN {s}.worker_status.task_ids IS 'Ids of those tasks, oldest start first';
COMMENT ON COLUMN {s}.worker_status.jobs IS 'Job names of those tasks';

CREATE VIEW {s}.stuck_tasks AS
SELECT t.id, t.name, t.queue, 'STARTED'::text AS state, 'worker lost'::text AS reason,
       now() - (w.heartbeat_at + w.lease_seconds * interval '1 second') AS overdue,
       t.worker, t.time_started AS since
FROM {s}.task t LEFT JOIN {s}.worker w ON w.id = t.worker
WHERE t.status = 5
  AND (w.id IS NULL OR w.stopped_at IS NOT NULL
       OR w.heartbeat_at + w.lease_seconds * interval '1 second' <= now())
UNION ALL
SELECT t.id, t.name, t.queue, s.name, 'past expiry', now() - t.expiry, t.worker, t.time_queued
FROM {s}.task t JOIN {s}.state s ON s.code = t.status
WHERE t.status IN (4, 6) AND t.expiry <= now();
COMMENT ON VIEW {s}.stuck_tasks IS 'Tasks that should have moved on: STARTED under a worker past its lease (lost, stopped or unknown), and QUEUED/RETRY tasks past their expiry that no sweep has revoked yet';
COMMENT ON COLUMN {s}.stuck_tasks.id IS 'Task id';
COMMENT ON COLUMN {s}.stuck_tasks.name IS 'Job name';
COMMENT ON COLUMN {s}.stuck_tasks.queue IS 'Queue name';
COMMENT ON COLUMN {s}.stuck_tasks.state IS 'State name: STARTED, QUEUED or RETRY';
COMMENT ON COLUMN {s}.stuck_tasks.reason IS '''worker lost'' (its worker is past its lease, stopped or unregistered) or ''past expiry''';
COMMENT ON COLUMN {s}.stuck_tasks.overdue IS 'How long past the lease end or the expiry (NULL when the worker is not registered)';
COMMENT ON COLUMN {s}.stuck_tasks.worker IS 'Worker that claimed the task last';
COMMENT ON COLUMN {s}.stuck_tasks.since IS 'When the task started (worker lost) or was queued (past expiry)';
"""

DOWNGRADE = r"""
DROP VIEW {s}.stuck_tasks;
DROP VIEW {s}.worker_status;
DROP VIEW {s}.queue_timeline;
DROP VIEW {s}.queue_throughput;
DROP VIEW {s}.queue_stats;
-- Back to revision 0001's task_state (CREATE OR REPLACE cannot drop columns).
DROP VIEW {s}.task_state;
CREATE VIEW {s}.task_state AS
SELECT t.id, t.name, t.queue, s.name AS state, t.status, t.priority, t.attempts, t.worker,
       t.time_queued, t.run_at, t.time_started, t.time_ended, t.expiry,
       t.time_started - t.time_queued AS wait, t.time_ended - t.time_started AS run,
       t.error, t.kwargs, t.result
FROM {s}.task t JOIN {s}.state s ON s.code = t.status;
COMMENT ON VIEW {s}.task_state IS 'Tasks with their state name and durations';
COMMENT ON COLUMN {s}.task_state.state IS 'State name (QUEUED, STARTED, RETRY, REVOKED, FAILURE, SUCCESS)';
COMMENT ON COLUMN {s}.task_state.wait IS 'time_started - time_queued: how long the task waited for a worker';
COMMENT ON COLUMN {s}.task_state.run IS 'time_ended - time_started: how long the last attempt ran';
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

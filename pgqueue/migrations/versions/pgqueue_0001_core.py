"""Core schema: the task table, its state lookup, the worker registry, task events.

Revision ID: pgqueue_0001_core
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import BRANCH_LABEL, forget_revision, record_revision, run_sql

revision: str = "pgqueue_0001_core"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = (BRANCH_LABEL,)
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE TABLE {s}.schema_version (
    revision   text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE {s}.schema_version IS
    'pgqueue revisions applied to this schema; workers refuse to start unless the newest one they need is here';
COMMENT ON COLUMN {s}.schema_version.revision IS 'Alembic revision id of a pgqueue revision';
COMMENT ON COLUMN {s}.schema_version.applied_at IS 'When the revision was applied';

CREATE TABLE {s}.state (
    code        smallint PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    live        boolean NOT NULL,
    ready       boolean NOT NULL,
    description text NOT NULL
);
COMMENT ON TABLE {s}.state IS 'The task states (pulsar numbering); join task.status = state.code to read them';
COMMENT ON COLUMN {s}.state.code IS 'Value stored in task.status';
COMMENT ON COLUMN {s}.state.name IS 'State name used in logs, the API and the CLI';
COMMENT ON COLUMN {s}.state.live IS 'True when a task in this state holds its lock_id';
COMMENT ON COLUMN {s}.state.ready IS 'True when the task has finished (pulsar READY_STATES)';
COMMENT ON COLUMN {s}.state.description IS 'What the state means';
INSERT INTO {s}.state (code, name, live, ready, description) VALUES
    (6, 'QUEUED',  true,  false, 'queued, waiting for a worker (claimable once run_at has passed)'),
    (5, 'STARTED', true,  false, 'claimed by a worker and running'),
    (4, 'RETRY',   true,  false, 'failed or lost; waiting for another attempt at run_at'),
    (3, 'REVOKED', false, true,  'revoked: expired before it started, or cancelled'),
    (2, 'FAILURE', false, true,  'ran and failed'),
    (1, 'SUCCESS', false, true,  'ran and succeeded');

CREATE TABLE {s}.task (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL,
    queue        text NOT NULL DEFAULT 'tasks',
    lock_id      text,
    status       smallint NOT NULL DEFAULT 6 CHECK (status BETWEEN 1 AND 6),
    priority     integer NOT NULL DEFAULT 0,
    kwargs       jsonb NOT NULL DEFAULT '{}'::jsonb,
    meta_params  jsonb NOT NULL DEFAULT '{}'::jsonb,
    result       jsonb,
    error        text,
    traceback    text,
    time_queued  timestamptz NOT NULL DEFAULT now(),
    run_at       timestamptz NOT NULL DEFAULT now(),
    time_started timestamptz,
    time_ended   timestamptz,
    expiry       timestamptz,
    worker       text,
    attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_retries  integer NOT NULL DEFAULT 0 CHECK (max_retries >= 0),
    revoke_requested_at timestamptz,
    CHECK (octet_length(queue) BETWEEN 1 AND 48)
) WITH (fillfactor = 85);
-- A queue table churns: every task leaves at least two dead row versions (claim, finish), and
-- the claim index task_claimable sees the same churn. Vacuum after 1% of the table (plus 1000
-- rows) changed instead of PostgreSQL's default 20%, so that with millions of finished rows
-- dead entries still get cleaned within seconds of work, not hours; analyze as often, so the
-- planner keeps seeing a small backlog and a large history.
ALTER TABLE {s}.task SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

COMMENT ON TABLE {s}.task IS 'One row per task: queued by queue_task, claimed and finished by workers';
COMMENT ON COLUMN {s}.task.id IS 'Task id (uuid), returned by queue_task';
COMMENT ON COLUMN {s}.task.name IS 'Job name: the registered job the task runs';
COMMENT ON COLUMN {s}.task.queue IS 'Queue the task waits in (pulsar''s backend name; default tasks); channels are <queue>_task_queued/_started/_done';
COMMENT ON COLUMN {s}.task.lock_id IS 'For non-overlapping jobs: sha256 of the job name and kwargs; unique among live tasks';
COMMENT ON COLUMN {s}.task.status IS 'State code: 6 QUEUED, 5 STARTED, 4 RETRY, 3 REVOKED, 2 FAILURE, 1 SUCCESS (see the state table)';
COMMENT ON COLUMN {s}.task.priority IS 'Higher priorities are claimed first; equal priorities in run_at order';
COMMENT ON COLUMN {s}.task.kwargs IS 'Keyword arguments of the job call (JSON)';
COMMENT ON COLUMN {s}.task.meta_params IS 'Extra parameters the caller attached to the task (JSON), not passed to the job';
COMMENT ON COLUMN {s}.task.result IS 'Return value of the job (JSON) once it succeeded';
COMMENT ON COLUMN {s}.task.error IS 'Why the task failed, was revoked or will be retried: "ExceptionType: message" or a reason';
COMMENT ON COLUMN {s}.task.traceback IS 'Python traceback of the last failure';
COMMENT ON COLUMN {s}.task.time_queued IS 'When the task was queued (database clock)';
COMMENT ON COLUMN {s}.task.run_at IS 'Earliest time a worker may claim the task: queue time, a delay, or a retry backoff';
COMMENT ON COLUMN {s}.task.time_started IS 'When the last attempt was claimed and started (database clock)';
COMMENT ON COLUMN {s}.task.time_ended IS 'When the task reached a ready state (SUCCESS, FAILURE or REVOKED)';
COMMENT ON COLUMN {s}.task.expiry IS 'A task not started by this time is REVOKED without running (pulsar expiry)';
COMMENT ON COLUMN {s}.task.worker IS 'Identity of the worker process that claimed the task last (see the worker table)';
COMMENT ON COLUMN {s}.task.attempts IS 'How many times the task has been claimed; writes of an execution are fenced on it';
COMMENT ON COLUMN {s}.task.max_retries IS 'How many attempts may follow the first one';
COMMENT ON COLUMN {s}.task.revoke_requested_at IS 'When revoke was asked for while the task ran; its worker stops it and records REVOKED';

-- "No second live copy": the database, not Python, decides. NULL lock_ids never conflict.
CREATE UNIQUE INDEX task_lock_id_live ON {s}.task (lock_id) WHERE status IN (4, 5, 6);
COMMENT ON INDEX {s}.task_lock_id_live IS 'At most one live (QUEUED, STARTED, RETRY) task per lock_id';
-- Claims read only this index, whose size is the backlog, not the history.
CREATE INDEX task_claimable ON {s}.task (queue, priority DESC, run_at, id) WHERE status IN (4, 6);
COMMENT ON INDEX {s}.task_claimable IS 'Claim order of claimable (QUEUED, RETRY) tasks per queue';
CREATE INDEX task_expiry_live ON {s}.task (expiry) WHERE status IN (4, 6) AND expiry IS NOT NULL;
COMMENT ON INDEX {s}.task_expiry_live IS 'Finds claimable tasks past their expiry for the revoke sweep';
CREATE INDEX task_started_worker ON {s}.task (worker) WHERE status = 5;
COMMENT ON INDEX {s}.task_started_worker IS 'Running tasks by worker, for rescue after a worker is lost';
CREATE INDEX task_time_ended ON {s}.task (time_ended) WHERE status IN (1, 2, 3);
COMMENT ON INDEX {s}.task_time_ended IS 'Finished tasks by end time, for retention (prune)';

CREATE TABLE {s}.worker (
    id            text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    queues        text[] NOT NULL,
    backlog       integer NOT NULL,
    lease_seconds double precision NOT NULL CHECK (lease_seconds > 0),
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);
COMMENT ON TABLE {s}.worker IS 'Worker processes, one row per process start; a worker is alive while heartbeat_at + lease_seconds > now()';
COMMENT ON COLUMN {s}.worker.id IS 'Identity unique to one process start: host:pid:random';
COMMENT ON COLUMN {s}.worker.hostname IS 'Host the worker runs on';
COMMENT ON COLUMN {s}.worker.pid IS 'Operating-system process id of the worker';
COMMENT ON COLUMN {s}.worker.queues IS 'Queues the worker claims from';
COMMENT ON COLUMN {s}.worker.backlog IS 'How many tasks the worker runs at once';
COMMENT ON COLUMN {s}.worker.lease_seconds IS 'How long after its last heartbeat the worker counts as lost and its tasks are rescued';
COMMENT ON COLUMN {s}.worker.started_at IS 'When the worker registered (database clock)';
COMMENT ON COLUMN {s}.worker.heartbeat_at IS 'Last heartbeat (database clock)';
COMMENT ON COLUMN {s}.worker.stopped_at IS 'When the worker stopped cleanly; NULL while running or after a crash';

-- Task events (pulsar's pubsub channels) as NOTIFY, sent at commit, payload the task id.
CREATE FUNCTION {s}.notify_task_queued() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    batch record;
BEGIN
    FOR batch IN
        SELECT queue, count(*) AS n, min(id::text) AS one FROM new_tasks GROUP BY queue
    LOOP
        PERFORM pg_notify(batch.queue || '_task_queued',
                          CASE WHEN batch.n = 1 THEN batch.one ELSE '*' END);
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.notify_task_queued() IS
    'One NOTIFY <queue>_task_queued per queue and statement: payload the task id, or * for several tasks';
CREATE TRIGGER task_queued AFTER INSERT ON {s}.task
    REFERENCING NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.notify_task_queued();

CREATE FUNCTION {s}.notify_task_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(NEW.queue || CASE
                          WHEN NEW.status = 5 THEN '_task_started'
                          WHEN NEW.status IN (4, 6) THEN '_task_queued'
                          ELSE '_task_done' END,
                      NEW.id::text);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.notify_task_status() IS
    'NOTIFY <queue>_task_started, _task_done (ready states) or _task_queued (back to QUEUED/RETRY) with the task id';
CREATE TRIGGER task_status AFTER UPDATE OF status ON {s}.task
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION {s}.notify_task_status();

CREATE VIEW {s}.task_state AS
SELECT t.id, t.name, t.queue, s.name AS state, t.status, t.priority, t.attempts, t.worker,
       t.time_queued, t.run_at, t.time_started, t.time_ended, t.expiry,
       t.time_started - t.time_queued AS wait, t.time_ended - t.time_started AS run,
       t.error, t.kwargs, t.result
FROM {s}.task t JOIN {s}.state s ON s.code = t.status;
COMMENT ON VIEW {s}.task_state IS 'Tasks with their state name and durations';
DO $$
DECLARE
    col record;
BEGIN
    -- The view's columns that come straight from the task table share its comments.
    FOR col IN
        SELECT a.attname, col_description('{s}.task'::regclass, a.attnum) AS comment
        FROM pg_attribute a
        WHERE a.attrelid = '{s}.task'::regclass AND a.attnum > 0
          AND a.attname IN (SELECT attname FROM pg_attribute
                            WHERE attrelid = '{s}.task_state'::regclass AND attnum > 0)
    LOOP
        EXECUTE format('COMMENT ON COLUMN {s}.task_state.%I IS %L', col.attname, col.comment);
    END LOOP;
END
$$;
COMMENT ON COLUMN {s}.task_state.state IS 'State name (QUEUED, STARTED, RETRY, REVOKED, FAILURE, SUCCESS)';
COMMENT ON COLUMN {s}.task_state.wait IS 'time_started - time_queued: how long the task waited for a worker';
COMMENT ON COLUMN {s}.task_state.run IS 'time_ended - time_started: how long the last attempt ran';
"""

DOWNGRADE = r"""
DROP VIEW {s}.task_state;
DROP TABLE {s}.task;
DROP FUNCTION {s}.notify_task_queued();
DROP FUNCTION {s}.notify_task_status();
DROP TABLE {s}.worker;
DROP TABLE {s}.state;
DROP TABLE {s}.schema_version;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

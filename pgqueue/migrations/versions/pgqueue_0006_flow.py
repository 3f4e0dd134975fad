"""Flow control: queues paused and resumed, fleet-wide and persisted.

Revision ID: pgqueue_0006_flow
Revises: pgqueue_0005_contract
Create Date: 2026-12-07

* **queue_setting**: one row per queue an operator has set something on. ``paused_at`` not
  NULL means paused: every worker's claim (``CLAIM_TASKS``) skips that queue, so a pause is
  fleet-wide, survives restarts and takes effect at the next claim of every worker; tasks
  already running finish, queued ones wait.
* **pause_queue(queue) / resume_queue(queue)**: the SQL an operator runs (``TaskBackend``
  and ``pgqueue pause/resume`` call them too). A plain ``UPDATE {s}.queue_setting SET
  paused_at = NULL`` works as well: the trigger below wakes the workers either way.
  A queue is *known* when a task (any state) or a worker (any, stopped ones included) ever
  used it, or it has a queue_setting row already; pausing an unknown queue, most likely a
  typo, raises ``no_data_found`` (SQLSTATE P0002) and changes nothing.
* **set_queue_limit(queue, concurrency)**: the queue's concurrency limit (NULL: none), for
  known queues as above.
* **Wake-up**: a row of queue_setting inserted or changed while not paused notifies
  ``<queue>_task_queued`` (through ``notify_task``, so never on a full NOTIFY queue): the
  workers listening on that queue claim at once, so a resume restarts the queue as fast as a
  new task would.
* **Concurrency limits.** ``task.concurrency`` (the job's ``concurrency`` when it was queued)
  and ``task.limit_key`` (its ``limit_key`` value): at most ``concurrency`` tasks of one
  (job, limit_key) STARTED at once; ``queue_setting.concurrency``: at most that many of the
  queue. The claim asks ``flow_free`` how many of a scope may still start: it takes a
  transaction-scoped advisory lock on the scope (held until the claim commits: fine under a
  transaction pooler), then counts the STARTED tasks in a fresh snapshot (a VOLATILE
  function's statements each take one), so a claim that admits while another's commit is in
  flight waits for it and then counts it (F29). Scopes are locked in one order (jobs, then
  queues, each by name), so two claims never deadlock. A limited task leaving STARTED wakes
  its queue's workers (trigger ``task_flow_wake``): a task held back costs nothing while it
  waits, no worker polls for it.
* **Unique windows**: index ``task_lock_id_started`` finds whether a task with a lock_id
  started within a job's ``unique_for`` seconds, finished or not (enqueue refuses a copy).
* **queue_flow**: the view of every queue's settings and live counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0006_flow"
down_revision: str | None = "pgqueue_0005_contract"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE TABLE {s}.queue_setting (
    queue       text PRIMARY KEY CONSTRAINT queue_setting_queue_no_comma CHECK (strpos(queue, ',') = 0),
    paused_at   timestamptz,
    concurrency integer CONSTRAINT queue_setting_concurrency_positive CHECK (concurrency > 0),
    rate_count  integer CONSTRAINT queue_setting_rate_count_positive CHECK (rate_count > 0),
    rate_seconds float8 CONSTRAINT queue_setting_rate_seconds_positive CHECK (rate_seconds > 0),
    CONSTRAINT queue_setting_rate_whole CHECK ((rate_count IS NULL) = (rate_seconds IS NULL)),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE {s}.queue_setting IS 'Flow-control settings of a queue, read by every claim; one row per queue an operator set something on (no row: defaults)';
COMMENT ON COLUMN {s}.queue_setting.queue IS 'Queue name (as task.queue)';
COMMENT ON COLUMN {s}.queue_setting.paused_at IS 'When the queue was paused (database clock); NULL: not paused. Workers claim nothing from a paused queue; running tasks finish';
COMMENT ON COLUMN {s}.queue_setting.concurrency IS 'At most this many tasks of the queue STARTED at once, across all workers; NULL: no limit';
COMMENT ON COLUMN {s}.queue_setting.rate_count IS 'At most this many starts of the queue per rate_seconds, across all workers; NULL: no rate limit';
COMMENT ON COLUMN {s}.queue_setting.rate_seconds IS 'The window of rate_count, seconds (database clock)';
COMMENT ON COLUMN {s}.queue_setting.updated_at IS 'When the row last changed (database clock)';

CREATE FUNCTION {s}.queue_setting_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER queue_setting_changed BEFORE UPDATE ON {s}.queue_setting
    FOR EACH ROW EXECUTE FUNCTION {s}.queue_setting_changed();

CREATE FUNCTION {s}.queue_setting_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM {s}.notify_task(NEW.queue || '_task_queued', '*');
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.queue_setting_wake() IS 'Wakes the workers of a queue whose settings changed while it is not paused (a resume): they claim at once';
CREATE TRIGGER queue_setting_wake AFTER INSERT OR UPDATE ON {s}.queue_setting
    FOR EACH ROW WHEN (NEW.paused_at IS NULL) EXECUTE FUNCTION {s}.queue_setting_wake();

CREATE FUNCTION {s}.require_known_queue(queue_name text) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF queue_name IS NULL OR NOT (
        EXISTS (SELECT 1 FROM {s}.queue_setting WHERE queue = queue_name)
        OR EXISTS (SELECT 1 FROM {s}.task WHERE queue = queue_name)
        OR EXISTS (SELECT 1 FROM {s}.worker WHERE queue_name = ANY(queues))
    ) THEN
        RAISE EXCEPTION 'pgqueue: unknown queue %: no task and no worker ever used it', quote_literal(queue_name)
            USING ERRCODE = 'no_data_found',
                  HINT = 'Check the name (pgqueue status lists the queues); nothing was changed.';
    END IF;
END
$$;
COMMENT ON FUNCTION {s}.require_known_queue(text) IS 'Raises no_data_found (P0002) unless a task or a worker ever used the queue or it has settings';

CREATE FUNCTION {s}.pause_queue(queue_name text) RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    since timestamptz;
BEGIN
    PERFORM {s}.require_known_queue(queue_name);
    INSERT INTO {s}.queue_setting AS q (queue, paused_at) VALUES (queue_name, now())
    ON CONFLICT (queue) DO UPDATE SET paused_at = COALESCE(q.paused_at, now())
    RETURNING q.paused_at INTO since;
    RETURN since;
END
$$;
COMMENT ON FUNCTION {s}.pause_queue(text) IS 'Pause a known queue (workers claim nothing from it; running tasks finish); returns since when it is paused. Pausing a paused queue changes nothing';

CREATE FUNCTION {s}.resume_queue(queue_name text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    was_paused boolean;
BEGIN
    PERFORM {s}.require_known_queue(queue_name);
    UPDATE {s}.queue_setting SET paused_at = NULL
    WHERE queue = queue_name AND paused_at IS NOT NULL
    RETURNING true INTO was_paused;
    RETURN COALESCE(was_paused, false);
END
$$;
COMMENT ON FUNCTION {s}.resume_queue(text) IS 'Resume a known queue and wake its workers; returns whether it was paused';

ALTER TABLE {s}.task
    ADD COLUMN limit_key text,
    ADD COLUMN concurrency integer CONSTRAINT task_concurrency_positive CHECK (concurrency > 0),
    ADD COLUMN rate_count integer CONSTRAINT task_rate_count_positive CHECK (rate_count > 0),
    ADD COLUMN rate_seconds float8 CONSTRAINT task_rate_seconds_positive CHECK (rate_seconds > 0),
    ADD CONSTRAINT task_rate_whole CHECK ((rate_count IS NULL) = (rate_seconds IS NULL));
COMMENT ON COLUMN {s}.task.limit_key IS 'The job''s limit_key value for this task (the kwarg named by it, or what its callable returned): limits apply per (name, limit_key); NULL: per job';
COMMENT ON COLUMN {s}.task.rate_count IS 'At most this many starts of the same name and limit_key per rate_seconds (the job''s rate_limit when queued); NULL: no rate limit';
COMMENT ON COLUMN {s}.task.rate_seconds IS 'The window of rate_count, seconds (database clock)';
COMMENT ON COLUMN {s}.task.concurrency IS 'At most this many tasks of the same name and limit_key STARTED at once (the job''s concurrency when queued); NULL: no limit';

CREATE INDEX task_started_limited ON {s}.task (name, limit_key) WHERE status = 5 AND concurrency IS NOT NULL;
COMMENT ON INDEX {s}.task_started_limited IS 'Running tasks of limited jobs by job and limit_key: what flow_free counts (tasks without a limit are not in it)';

CREATE INDEX task_lock_id_started ON {s}.task (lock_id, time_started) WHERE lock_id IS NOT NULL AND time_started IS NOT NULL;
COMMENT ON INDEX {s}.task_lock_id_started IS 'Tasks with a lock_id by start time, finished ones included: the unique window of Job.unique_for (a copy is refused while one started within it)';

CREATE TABLE {s}.flow_start (
    scope       text NOT NULL,
    queue       text NOT NULL,
    reopens_at  timestamptz NOT NULL
);
CREATE INDEX flow_start_scope ON {s}.flow_start (scope, reopens_at);
CREATE INDEX flow_start_queue ON {s}.flow_start (queue, reopens_at);
COMMENT ON TABLE {s}.flow_start IS 'One row per start of a rate-limited task, kept for its window: what rate limits count (written by the claim, pruned by flow_free)';
COMMENT ON COLUMN {s}.flow_start.scope IS 'What the start counts against (flow_scope): a job and limit_key, or a queue';
COMMENT ON COLUMN {s}.flow_start.queue IS 'Queue of the task that started (workers of that queue wake when the window reopens)';
COMMENT ON COLUMN {s}.flow_start.reopens_at IS 'When this start leaves its rate window (start time + window, database clock)';

CREATE FUNCTION {s}.flow_scope(job text, key text, queue_name text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN job IS NOT NULL THEN 'job ' || job || ' ' || COALESCE(quote_literal(key), 'NULL')
                ELSE 'queue ' || queue_name END
$$;
COMMENT ON FUNCTION {s}.flow_scope(text, text, text) IS 'The name of a flow-control scope: job and limit_key when job is not NULL, else the queue';

CREATE FUNCTION {s}.flow_free(job text, key text, queue_name text, most integer,
                              rate_n integer, rate_s float8) RETURNS integer
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    scope_name text := {s}.flow_scope(job, key, queue_name);
    free integer := 2147483647;
    used integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pgqueue flow'), hashtext(scope_name));
    -- Each statement below runs in a fresh snapshot (VOLATILE): it sees every claim that
    -- held this lock before and has committed.
    IF most IS NOT NULL THEN
        IF job IS NULL THEN
            SELECT count(*) INTO used FROM {s}.task WHERE status = 5 AND queue = queue_name;
        ELSIF key IS NULL THEN
            SELECT count(*) INTO used FROM {s}.task
            WHERE status = 5 AND concurrency IS NOT NULL AND name = job AND limit_key IS NULL;
        ELSE
            SELECT count(*) INTO used FROM {s}.task
            WHERE status = 5 AND concurrency IS NOT NULL AND name = job AND limit_key = key;
        END IF;
        free := most - used;
    END IF;
    IF rate_n IS NOT NULL THEN
        DELETE FROM {s}.flow_start WHERE scope = scope_name AND reopens_at <= clock_timestamp();
        SELECT count(*) INTO used FROM {s}.flow_start WHERE scope = scope_name;
        free := least(free, rate_n - used);
    END IF;
    RETURN greatest(free, 0);
END
$$;
COMMENT ON FUNCTION {s}.flow_free(text, text, text, integer, integer, float8) IS 'How many more tasks of a scope (flow_scope) may start now: at most most STARTED, at most rate_n starts per rate_s seconds (NULL: no such limit). Locks the scope until the end of the transaction and counts in a fresh snapshot (called by the claim)';

CREATE FUNCTION {s}.task_flow_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.concurrency IS NOT NULL OR EXISTS (
        SELECT FROM {s}.queue_setting WHERE queue = NEW.queue AND concurrency IS NOT NULL
    ) THEN
        PERFORM {s}.notify_task(NEW.queue || '_task_queued', '*');
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.task_flow_wake() IS 'A task of a limited job or queue left STARTED: wake the queue''s workers, a task held back by the limit may start now';
CREATE TRIGGER task_flow_wake AFTER UPDATE OF status ON {s}.task
    FOR EACH ROW WHEN (OLD.status = 5 AND NEW.status <> 5)
    EXECUTE FUNCTION {s}.task_flow_wake();

CREATE FUNCTION {s}.set_queue_limit(queue_name text, most integer,
                                    rate_n integer DEFAULT NULL, rate_s float8 DEFAULT NULL)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM {s}.require_known_queue(queue_name);
    INSERT INTO {s}.queue_setting AS q (queue, concurrency, rate_count, rate_seconds)
    VALUES (queue_name, most, rate_n, rate_s)
    ON CONFLICT (queue) DO UPDATE
    SET concurrency = most, rate_count = rate_n, rate_seconds = rate_s;
END
$$;
COMMENT ON FUNCTION {s}.set_queue_limit(text, integer, integer, float8) IS 'Set the limits of a known queue: at most most STARTED at once, at most rate_n starts per rate_s seconds, across all workers (NULL: no such limit); raises check_violation for values < 1 or a window <= 0';

CREATE VIEW {s}.queue_flow AS
WITH live AS (
    SELECT queue,
           count(*) FILTER (WHERE status IN (4, 6)) AS waiting,
           count(*) FILTER (WHERE status = 5) AS started
    FROM {s}.task WHERE status IN (4, 5, 6)
    GROUP BY queue
)
SELECT COALESCE(qs.queue, l.queue) AS queue,
       qs.paused_at IS NOT NULL AS paused,
       qs.paused_at,
       qs.concurrency,
       qs.rate_count,
       qs.rate_seconds,
       COALESCE(l.waiting, 0) AS waiting,
       COALESCE(l.started, 0) AS started
FROM {s}.queue_setting qs FULL JOIN live l ON l.queue = qs.queue;
COMMENT ON VIEW {s}.queue_flow IS 'Per queue with live tasks or settings: whether it is paused, and its waiting and running tasks';
COMMENT ON COLUMN {s}.queue_flow.queue IS 'Queue name';
COMMENT ON COLUMN {s}.queue_flow.paused IS 'True while the queue is paused (workers claim nothing from it)';
COMMENT ON COLUMN {s}.queue_flow.paused_at IS 'When it was paused; NULL when not paused';
COMMENT ON COLUMN {s}.queue_flow.concurrency IS 'At most this many STARTED at once (set_queue_limit); NULL: no limit';
COMMENT ON COLUMN {s}.queue_flow.rate_count IS 'At most this many starts per rate_seconds (set_queue_limit); NULL: no rate limit';
COMMENT ON COLUMN {s}.queue_flow.rate_seconds IS 'The window of rate_count, seconds';
COMMENT ON COLUMN {s}.queue_flow.waiting IS 'QUEUED and RETRY tasks (due or not)';
COMMENT ON COLUMN {s}.queue_flow.started IS 'STARTED tasks (running now)';

CREATE VIEW {s}.flow_limits AS
SELECT t.name, t.limit_key,
       max(t.concurrency) AS concurrency,
       count(*) FILTER (WHERE t.status = 5) AS started,
       count(*) FILTER (WHERE t.status IN (4, 6)) AS waiting,
       max(t.rate_count) AS rate_count,
       max(t.rate_seconds) AS rate_seconds,
       (SELECT count(*) FROM {s}.flow_start f
        WHERE f.scope = {s}.flow_scope(t.name, t.limit_key, NULL) AND f.reopens_at > now())
         AS recent_starts
FROM {s}.task t
WHERE t.status IN (4, 5, 6) AND (t.concurrency IS NOT NULL OR t.rate_count IS NOT NULL)
GROUP BY t.name, t.limit_key;
COMMENT ON VIEW {s}.flow_limits IS 'Per limited job and limit_key with live tasks: its limits and how much of them is used (why a task waits)';
COMMENT ON COLUMN {s}.flow_limits.name IS 'Job name';
COMMENT ON COLUMN {s}.flow_limits.limit_key IS 'The limit_key value (NULL: the job as a whole)';
COMMENT ON COLUMN {s}.flow_limits.concurrency IS 'At most this many STARTED at once; NULL: no concurrency limit';
COMMENT ON COLUMN {s}.flow_limits.started IS 'STARTED now (at concurrency: the waiting ones wait for a slot)';
COMMENT ON COLUMN {s}.flow_limits.waiting IS 'QUEUED and RETRY tasks (due or not)';
COMMENT ON COLUMN {s}.flow_limits.rate_count IS 'At most this many starts per rate_seconds; NULL: no rate limit';
COMMENT ON COLUMN {s}.flow_limits.rate_seconds IS 'The window of rate_count, seconds';
COMMENT ON COLUMN {s}.flow_limits.recent_starts IS 'Starts still inside the rate window (at rate_count: the waiting ones wait for it to reopen)';
"""

DOWNGRADE = r"""
DROP VIEW {s}.flow_limits;
DROP VIEW {s}.queue_flow;
DROP TRIGGER task_flow_wake ON {s}.task;
DROP FUNCTION {s}.task_flow_wake();
DROP FUNCTION {s}.flow_free(text, text, text, integer, integer, float8);
DROP FUNCTION {s}.flow_scope(text, text, text);
DROP TABLE {s}.flow_start;
DROP INDEX {s}.task_started_limited;
DROP INDEX {s}.task_lock_id_started;
ALTER TABLE {s}.task DROP CONSTRAINT task_rate_whole, DROP COLUMN rate_seconds,
    DROP COLUMN rate_count, DROP COLUMN limit_key, DROP COLUMN concurrency;
DROP FUNCTION {s}.set_queue_limit(text, integer, integer, float8);
DROP FUNCTION {s}.resume_queue(text);
DROP FUNCTION {s}.pause_queue(text);
DROP FUNCTION {s}.require_known_queue(text);
DROP TABLE {s}.queue_setting;
DROP FUNCTION {s}.queue_setting_wake();
DROP FUNCTION {s}.queue_setting_changed();
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

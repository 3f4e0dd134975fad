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
* **Wake-up**: a row of queue_setting inserted or changed while not paused notifies
  ``<queue>_task_queued`` (through ``notify_task``, so never on a full NOTIFY queue): the
  workers listening on that queue claim at once, so a resume restarts the queue as fast as a
  new task would.
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
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE {s}.queue_setting IS 'Flow-control settings of a queue, read by every claim; one row per queue an operator set something on (no row: defaults)';
COMMENT ON COLUMN {s}.queue_setting.queue IS 'Queue name (as task.queue)';
COMMENT ON COLUMN {s}.queue_setting.paused_at IS 'When the queue was paused (database clock); NULL: not paused. Workers claim nothing from a paused queue; running tasks finish';
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
       COALESCE(l.waiting, 0) AS waiting,
       COALESCE(l.started, 0) AS started
FROM {s}.queue_setting qs FULL JOIN live l ON l.queue = qs.queue;
COMMENT ON VIEW {s}.queue_flow IS 'Per queue with live tasks or settings: whether it is paused, and its waiting and running tasks';
COMMENT ON COLUMN {s}.queue_flow.queue IS 'Queue name';
COMMENT ON COLUMN {s}.queue_flow.paused IS 'True while the queue is paused (workers claim nothing from it)';
COMMENT ON COLUMN {s}.queue_flow.paused_at IS 'When it was paused; NULL when not paused';
COMMENT ON COLUMN {s}.queue_flow.waiting IS 'QUEUED and RETRY tasks (due or not)';
COMMENT ON COLUMN {s}.queue_flow.started IS 'STARTED tasks (running now)';
"""

DOWNGRADE = r"""
DROP VIEW {s}.queue_flow;
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

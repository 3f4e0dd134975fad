"""Attempt history and the operators' audit trail (issue 18).

Revision ID: pgqueue_0008_dashboard
Revises: pgqueue_0007_workflows
Create Date: 2026-12-07

* **``task_attempt``**: the error, traceback, worker and times of a task's earlier attempts.
  A task row holds only its latest attempt: a retry (automatic, RETRY -> STARTED, or by an
  operator, FAILURE/REVOKED -> QUEUED) overwrote the previous error and traceback, and so did
  the end of a task waiting to be retried (RETRY -> REVOKED by an operator or its expiry, or
  FAILURE when its attempts ran out at claim). The trigger
  ``task_keep_attempt`` copies the attempt about to be overwritten, and only then: a task that
  succeeds first time writes nothing here, so the happy path pays nothing. Rows go with their
  task (``ON DELETE CASCADE``: pruning a task prunes its history).
* **``operator_action``**: who did what to which task, and when (retry, revoke, run now, grant
  attempts, bulk actions), written in the action's own transaction by ``pgqueue``'s CLI and
  dashboard. It has no foreign key: the trail outlives pruned tasks.
* **``task_changed``**: an index in the task list's default order (latest change first), so
  its first pages read a few index entries instead of sorting every row (a table of a million
  finished tasks: see ``benchmarks/dashboard_pages.py``). Building it reads the whole task
  table once, blocking writes to it meanwhile: on a large table, create it beforehand with
  ``CREATE INDEX CONCURRENTLY`` under the same name and definition and this revision skips it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0008_dashboard"
down_revision: str | None = "pgqueue_0007_workflows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE TABLE {s}.task_attempt (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id      uuid NOT NULL REFERENCES {s}.task (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    status       smallint NOT NULL,
    worker       text,
    time_started timestamptz,
    time_ended   timestamptz,
    error        text,
    traceback    text,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_attempt_task ON {s}.task_attempt (task_id, id);
COMMENT ON TABLE {s}.task_attempt IS
    'Earlier attempts of a task, copied by trigger task_keep_attempt before a retry overwrites them';
COMMENT ON COLUMN {s}.task_attempt.id IS 'Order in which attempts were recorded';
COMMENT ON COLUMN {s}.task_attempt.task_id IS 'The task (rows go when it is pruned)';
COMMENT ON COLUMN {s}.task_attempt.attempt IS 'The task''s attempts counter when this attempt ended';
COMMENT ON COLUMN {s}.task_attempt.status IS 'How the attempt ended: FAILURE, REVOKED or RETRY (see table state)';
COMMENT ON COLUMN {s}.task_attempt.worker IS 'Worker that ran the attempt';
COMMENT ON COLUMN {s}.task_attempt.time_started IS 'When the attempt started';
COMMENT ON COLUMN {s}.task_attempt.time_ended IS 'When the attempt ended (NULL for a RETRY)';
COMMENT ON COLUMN {s}.task_attempt.error IS 'The attempt''s error message';
COMMENT ON COLUMN {s}.task_attempt.traceback IS 'The attempt''s traceback';
COMMENT ON COLUMN {s}.task_attempt.recorded_at IS 'When the next attempt or a retry replaced it';

CREATE FUNCTION {s}.keep_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.task_attempt (task_id, attempt, status, worker, time_started, time_ended,
                                  error, traceback)
    VALUES (OLD.id, OLD.attempts, OLD.status, OLD.worker, OLD.time_started, OLD.time_ended,
            OLD.error, OLD.traceback);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.keep_attempt() IS
    'Copies the attempt a retry is about to overwrite into task_attempt';
CREATE TRIGGER task_keep_attempt AFTER UPDATE OF status ON {s}.task
    FOR EACH ROW WHEN ((OLD.status IN (2, 3, 4) AND NEW.status IN (5, 6))
                       OR (OLD.status = 4 AND NEW.status IN (2, 3)))
    EXECUTE FUNCTION {s}.keep_attempt();

CREATE INDEX IF NOT EXISTS task_changed
    ON {s}.task ((COALESCE(time_ended, time_started, time_queued)) DESC, id);
COMMENT ON INDEX {s}.task_changed IS 'The task list in its default order: latest change first';

CREATE TABLE {s}.operator_action (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    task_id uuid,
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX operator_action_task ON {s}.operator_action (task_id) WHERE task_id IS NOT NULL;
COMMENT ON TABLE {s}.operator_action IS
    'Audit trail: who (actor) did what (action, detail) to which task, when';
COMMENT ON COLUMN {s}.operator_action.id IS 'Order of the actions';
COMMENT ON COLUMN {s}.operator_action.at IS 'When the action was done (database clock)';
COMMENT ON COLUMN {s}.operator_action.actor IS 'Who: user@host for the CLI, the user and address for the dashboard';
COMMENT ON COLUMN {s}.operator_action.action IS 'What: retry, revoke, run now, grant attempts';
COMMENT ON COLUMN {s}.operator_action.task_id IS 'The task acted on (kept after the task is pruned)';
COMMENT ON COLUMN {s}.operator_action.detail IS 'Parameters of the action (JSON)';
"""

DOWNGRADE = r"""
DROP INDEX {s}.task_changed;
DROP TABLE {s}.operator_action;
DROP TRIGGER task_keep_attempt ON {s}.task;
DROP FUNCTION {s}.keep_attempt();
DROP TABLE {s}.task_attempt;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

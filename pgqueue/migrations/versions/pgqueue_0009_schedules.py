"""Pausing and triggering periodic schedules (issue 18).

Revision ID: pgqueue_0009_schedules
Revises: pgqueue_0008_dashboard
Create Date: 2026-12-07

* **``schedule.paused_at``**: a paused schedule queues nothing at its ticks, on every
  scheduler: a scheduler still moves ``next_tick`` on past each due tick and counts it in
  ``skipped_count`` (``last_outcome`` ``skipped (paused)``), so resuming does not catch up on
  the ticks of the pause, whatever the missed-run policy.
* **``schedule.trigger_requested_at`` / ``trigger_requested_by``**: an operator asked for one
  run now. The next scheduler round (it counts the schedule as due) queues one task of the job
  as a tick would (its queue, priority and lock_id: a job that cannot overlap is not queued
  while its previous task is live), ``meta_params`` saying who triggered it, and clears the
  request in the same transaction. Paused schedules can be triggered too.
* The ``schedule_state`` view shows ``paused_at`` and ``trigger_requested_at``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0009_schedules"
down_revision: str | None = "pgqueue_0008_dashboard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
ALTER TABLE {s}.schedule
    ADD COLUMN paused_at timestamptz,
    ADD COLUMN trigger_requested_at timestamptz,
    ADD COLUMN trigger_requested_by text;
COMMENT ON COLUMN {s}.schedule.paused_at IS
    'When an operator paused the schedule (NULL: running). Every scheduler skips a paused schedule''s ticks: next_tick moves on and they count in skipped_count';
COMMENT ON COLUMN {s}.schedule.trigger_requested_at IS
    'When an operator asked for one run now (NULL: none pending); the next scheduler round queues it as a tick and clears this';
COMMENT ON COLUMN {s}.schedule.trigger_requested_by IS
    'Who asked for the pending run (written into the task''s meta_params as triggered_by)';

CREATE OR REPLACE VIEW {s}.schedule_state AS
SELECT s.name,
       CASE WHEN s.cron IS NULL THEN 'every ' || s.run_every::text
            ELSE 'cron ' || s.cron || ' ' || s.timezone END AS schedule,
       s.missed, s.last_tick, s.next_tick, s.next_tick - now() AS due_in,
       s.runs_count, s.skipped_count, s.last_outcome, s.last_task, st.name AS last_task_state,
       s.paused_at, s.trigger_requested_at
FROM {s}.schedule s
LEFT JOIN {s}.task t ON t.id = s.last_task
LEFT JOIN {s}.state st ON st.code = t.status;
COMMENT ON COLUMN {s}.schedule_state.paused_at IS 'When the schedule was paused; NULL while it runs';
COMMENT ON COLUMN {s}.schedule_state.trigger_requested_at IS 'When a run now was asked for and not yet queued; NULL when none is pending';
"""

DOWNGRADE = r"""
DROP VIEW {s}.schedule_state;
CREATE VIEW {s}.schedule_state AS
SELECT s.name,
       CASE WHEN s.cron IS NULL THEN 'every ' || s.run_every::text
            ELSE 'cron ' || s.cron || ' ' || s.timezone END AS schedule,
       s.missed, s.last_tick, s.next_tick, s.next_tick - now() AS due_in,
       s.runs_count, s.skipped_count, s.last_outcome, s.last_task, st.name AS last_task_state
FROM {s}.schedule s
LEFT JOIN {s}.task t ON t.id = s.last_task
LEFT JOIN {s}.state st ON st.code = t.status;
ALTER TABLE {s}.schedule
    DROP COLUMN paused_at,
    DROP COLUMN trigger_requested_at,
    DROP COLUMN trigger_requested_by;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

"""Periodic schedules: one row per periodic job, advanced once per tick by any scheduler.

Revision ID: pgqueue_0002_schedule
Revises: pgqueue_0001_core
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0002_schedule"
down_revision: str | None = "pgqueue_0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE TABLE {s}.schedule (
    name           text PRIMARY KEY,
    run_every      interval CHECK (run_every > interval '0'),
    anchor         timestamptz,
    cron           text,
    timezone       text,
    missed         text NOT NULL DEFAULT 'once' CHECK (missed IN ('skip', 'once', 'all')),
    backfill_limit integer NOT NULL DEFAULT 100 CHECK (backfill_limit >= 1),
    misfire_grace  interval NOT NULL DEFAULT interval '60 seconds' CHECK (misfire_grace >= interval '0'),
    next_tick      timestamptz NOT NULL,
    last_tick      timestamptz,
    last_task      uuid,
    last_outcome   text,
    runs_count     bigint NOT NULL DEFAULT 0 CHECK (runs_count >= 0),
    skipped_count  bigint NOT NULL DEFAULT 0 CHECK (skipped_count >= 0),
    defined_at     timestamptz NOT NULL DEFAULT now(),
    ticked_at      timestamptz,
    CHECK ((run_every IS NOT NULL AND anchor IS NOT NULL AND cron IS NULL)
           OR (cron IS NOT NULL AND timezone IS NOT NULL AND run_every IS NULL AND anchor IS NULL))
);
COMMENT ON TABLE {s}.schedule IS
    'One row per periodic job. A scheduler queues the task of a due tick and moves next_tick forward in one transaction, guarded by a compare-and-set on next_tick, so each tick is queued once however many schedulers run';
COMMENT ON COLUMN {s}.schedule.name IS 'Job name of the periodic job (task.name of the tasks it queues)';
COMMENT ON COLUMN {s}.schedule.run_every IS 'Interval schedules: ticks fall on anchor + k * run_every in absolute time (NULL for cron schedules)';
COMMENT ON COLUMN {s}.schedule.anchor IS 'Interval schedules: the instant ticks are aligned to; the job''s anchor, or when the schedule was first defined (NULL for cron)';
COMMENT ON COLUMN {s}.schedule.cron IS 'Cron schedules: the cron expression, read in timezone (NULL for interval schedules)';
COMMENT ON COLUMN {s}.schedule.timezone IS 'IANA time zone of a cron expression (required), or of an interval job''s naive anchor (informative)';
COMMENT ON COLUMN {s}.schedule.missed IS 'What a scheduler does with ticks missed while no scheduler ran: skip (none run), once (one catch-up run), all (one run per missed tick, up to backfill_limit)';
COMMENT ON COLUMN {s}.schedule.backfill_limit IS 'missed = all: the most missed ticks queued at once (the most recent ones); older ones count as skipped';
COMMENT ON COLUMN {s}.schedule.misfire_grace IS 'missed = skip: a tick handled later than this after its time counts as missed and is not run';
COMMENT ON COLUMN {s}.schedule.next_tick IS 'The next tick not yet handled; it is due once next_tick <= now() (database clock)';
COMMENT ON COLUMN {s}.schedule.last_tick IS 'The most recent tick handled (queued or skipped); NULL before the first';
COMMENT ON COLUMN {s}.schedule.last_task IS 'Id of the task queued for the most recent tick that queued one (it may have been pruned since)';
COMMENT ON COLUMN {s}.schedule.last_outcome IS 'What happened at the last handled tick: queued, skipped (overlap: a live task held the lock_id), skipped (missed)';
COMMENT ON COLUMN {s}.schedule.runs_count IS 'How many tasks this schedule has queued (pulsar''s total_run_count)';
COMMENT ON COLUMN {s}.schedule.skipped_count IS 'How many ticks were skipped: missed during downtime, or found the previous run still live';
COMMENT ON COLUMN {s}.schedule.defined_at IS 'When the schedule was first defined or last redefined (database clock)';
COMMENT ON COLUMN {s}.schedule.ticked_at IS 'When a scheduler last handled a tick of this schedule (database clock)';

CREATE VIEW {s}.schedule_state AS
SELECT s.name,
       CASE WHEN s.cron IS NULL THEN 'every ' || s.run_every::text
            ELSE 'cron ' || s.cron || ' ' || s.timezone END AS schedule,
       s.missed, s.last_tick, s.next_tick, s.next_tick - now() AS due_in,
       s.runs_count, s.skipped_count, s.last_outcome, s.last_task, st.name AS last_task_state
FROM {s}.schedule s
LEFT JOIN {s}.task t ON t.id = s.last_task
LEFT JOIN {s}.state st ON st.code = t.status;
COMMENT ON VIEW {s}.schedule_state IS 'Periodic schedules with their next tick, how far off it is, and the state of the last task queued';
COMMENT ON COLUMN {s}.schedule_state.name IS 'Job name of the periodic job';
COMMENT ON COLUMN {s}.schedule_state.missed IS 'Missed-run policy: skip, once or all';
COMMENT ON COLUMN {s}.schedule_state.last_tick IS 'The most recent tick handled (queued or skipped)';
COMMENT ON COLUMN {s}.schedule_state.next_tick IS 'The next tick; due once it is <= now()';
COMMENT ON COLUMN {s}.schedule_state.runs_count IS 'How many tasks the schedule has queued';
COMMENT ON COLUMN {s}.schedule_state.skipped_count IS 'How many ticks were skipped (missed, or overlap)';
COMMENT ON COLUMN {s}.schedule_state.last_outcome IS 'queued, skipped (overlap) or skipped (missed)';
COMMENT ON COLUMN {s}.schedule_state.last_task IS 'Id of the task queued for the last tick that queued one';
COMMENT ON COLUMN {s}.schedule_state.schedule IS 'The schedule in words: every <interval>, or cron <expression> <time zone>';
COMMENT ON COLUMN {s}.schedule_state.due_in IS 'next_tick - now(): negative when a tick is due and waits for a scheduler';
COMMENT ON COLUMN {s}.schedule_state.last_task_state IS 'State of last_task; NULL when none was queued or it was pruned';
"""

DOWNGRADE = r"""
DROP VIEW {s}.schedule_state;
DROP TABLE {s}.schedule;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

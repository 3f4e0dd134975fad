"""Cheaper task triggers on the hot path (issues 11 and 16).

Revision ID: pgqueue_0012_fast_path
Revises: pgqueue_0011_callback_batch
Create Date: 2026-12-07

Every enqueue, claim and finish runs the task triggers; revisions 0005 and 0006 made them
dearer, and this revision gives back the cost without changing what they do:

* **``notify_task`` only when the NOTIFY queue is half full.** ``notify_task(channel,
  payload)`` carries ``SET search_path``, so each call saves and restores settings (2,000
  single-row INSERTs in a PL/pgSQL loop on PostgreSQL 18 took 110 ms with a plain
  ``pg_notify`` in the trigger against 160 ms through ``notify_task``, best of eight runs).
  ``notify_task_queued`` and ``notify_task_status`` now call ``pg_notify`` themselves while
  ``pg_notification_queue_usage()`` is below 0.5 and hand over to ``notify_task`` (which
  checks again, skips and warns) only above it: the same notifications, the same F27 rule.
* **One trigger per status change, not two.** ``task_flow_wake`` (a task of a limited job or
  queue left STARTED: wake its queue's workers) fired beside ``task_status`` on every finish,
  a second PL/pgSQL call per task. ``notify_task_status`` now does the wake itself, first, as
  the two triggers did in their (alphabetical) order, and the trigger ``task_flow_wake`` and
  its function are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0012_fast_path"
down_revision: str | None = "pgqueue_0011_callback_batch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The enqueue trigger's function as this revision makes it (revision
#: pgqueue_0017_fewer_notifications restores it on downgrade).
NOTIFY_TASK_QUEUED = r"""
CREATE OR REPLACE FUNCTION {s}.notify_task_queued() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    batch record;
    channel text;
    payload text;
BEGIN
    FOR batch IN
        SELECT queue, count(*) AS n, min(id::text) AS one FROM new_tasks GROUP BY queue
    LOOP
        channel := batch.queue || '_task_queued';
        payload := CASE WHEN batch.n = 1 THEN batch.one ELSE '*' END;
        IF pg_catalog.pg_notification_queue_usage() < 0.5 THEN
            PERFORM pg_catalog.pg_notify(channel, payload);
        ELSE
            PERFORM {s}.notify_task(channel, payload);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
"""

#: The status trigger's function as this revision makes it, with its comment (revision
#: pgqueue_0017_fewer_notifications builds on it and restores it on downgrade).
NOTIFY_TASK_STATUS = r"""
CREATE OR REPLACE FUNCTION {s}.notify_task_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    channel text := NEW.queue || CASE WHEN NEW.status = 5 THEN '_task_started'
                                      WHEN NEW.status IN (4, 6) THEN '_task_queued'
                                      ELSE '_task_done' END;
    wake boolean := false;
BEGIN
    IF OLD.status = 5 THEN
        wake := NEW.concurrency IS NOT NULL OR EXISTS (
            SELECT FROM {s}.queue_setting WHERE queue = NEW.queue AND concurrency IS NOT NULL);
    END IF;
    IF pg_catalog.pg_notification_queue_usage() < 0.5 THEN
        IF wake THEN
            PERFORM pg_catalog.pg_notify(NEW.queue || '_task_queued', '*');
        END IF;
        PERFORM pg_catalog.pg_notify(channel, NEW.id::text);
    ELSE
        IF wake THEN
            PERFORM {s}.notify_task(NEW.queue || '_task_queued', '*');
        END IF;
        PERFORM {s}.notify_task(channel, NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.notify_task_status() IS
    'Tells the queue''s listeners a task changed status (<queue>_task_started, _task_queued or _task_done, payload its id) and, when a task of a limited job or queue left STARTED, wakes the queue''s workers first (<queue>_task_queued, payload *): a task held back by the limit may start now. Above half a full NOTIFY queue it goes through notify_task (skip and warn)';
"""

UPGRADE = (
    NOTIFY_TASK_QUEUED
    + NOTIFY_TASK_STATUS
    + r"""
DROP TRIGGER task_flow_wake ON {s}.task;
DROP FUNCTION {s}.task_flow_wake();
"""
)

DOWNGRADE = r"""
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

CREATE OR REPLACE FUNCTION {s}.notify_task_queued() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    batch record;
BEGIN
    FOR batch IN
        SELECT queue, count(*) AS n, min(id::text) AS one FROM new_tasks GROUP BY queue
    LOOP
        PERFORM {s}.notify_task(batch.queue || '_task_queued',
                                CASE WHEN batch.n = 1 THEN batch.one ELSE '*' END);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION {s}.notify_task_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM {s}.notify_task(NEW.queue || CASE
                                WHEN NEW.status = 5 THEN '_task_started'
                                WHEN NEW.status IN (4, 6) THEN '_task_queued'
                                ELSE '_task_done' END,
                            NEW.id::text);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.notify_task_status() IS
    'NOTIFY <queue>_task_started, _task_done (ready states) or _task_queued (back to QUEUED/RETRY) with the task id';
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

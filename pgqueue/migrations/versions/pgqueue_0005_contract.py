"""Enqueue never fails on a full NOTIFY queue; queue names without commas.

Revision ID: pgqueue_0005_contract
Revises: pgqueue_0004_operations
Create Date: 2026-12-07

* **NOTIFY only while the queue has room** (F27). PostgreSQL keeps notifications until every
  listening session has read them; one listener idle in a transaction holds them all, and once
  the queue is full every transaction that notifies fails at commit with "too many
  notifications in the NOTIFY queue", enqueue included (a trigger cannot catch an error raised
  at commit). The task triggers now go through ``{s}.notify_task(channel, payload)``, which
  skips the notification while ``pg_notification_queue_usage()`` is at or above
  ``0.5`` and raises a WARNING saying why and which session most likely holds the queue back.
  Workers find the task anyway by polling (``poll_timeout``), so nothing is lost but latency.
* **No comma in queue names** (issue 12): ``--queues`` splits on commas, so a queue named
  ``a,b`` could be queued to but never consumed. A CHECK constraint refuses it for every way a
  task is written (``TaskBackend``, ``{s}.queue_task``, plain INSERT); ``NOT VALID`` keeps
  the upgrade from reading the whole table (rows already there stay as they are).
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0005_contract"
down_revision: str | None = "pgqueue_0004_operations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE FUNCTION {s}.notify_task(channel text, payload text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    usage float8 := pg_notification_queue_usage();
    holder text;
BEGIN
    IF usage < 0.5 THEN
        PERFORM pg_notify(channel, payload);
        RETURN true;
    END IF;
    SELECT format('pid %s (user %s, application %L, %s since %s)', a.pid, a.usename,
                  a.application_name, a.state, a.xact_start)
    INTO holder
    FROM pg_stat_activity a
    WHERE a.state LIKE 'idle in transaction%' AND a.pid <> pg_backend_pid()
    ORDER BY a.xact_start
    LIMIT 1;
    RAISE WARNING 'pgqueue: NOTIFY % skipped: the notification queue is % full, so notifying could fail this transaction at commit; workers find the task by polling meanwhile',
        channel, round((usage * 100)::numeric, 1) || '%'
        USING HINT = 'A listening session that does not read its notifications holds the queue back: '
                     || coalesce('most likely ' || holder, 'see pg_stat_activity for a session idle in a transaction')
                     || '. End its transaction (or pg_terminate_backend it) to free the queue.';
    RETURN false;
END
$$;
COMMENT ON FUNCTION {s}.notify_task(text, text) IS
    'pg_notify(channel, payload) unless the NOTIFY queue is half full (pg_notification_queue_usage() >= 0.5): then a WARNING naming the likely holder, no notification (workers poll), and false';

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

ALTER TABLE {s}.task ADD CONSTRAINT task_queue_no_comma CHECK (strpos(queue, ',') = 0) NOT VALID;
COMMENT ON CONSTRAINT task_queue_no_comma ON {s}.task IS
    'Queue names hold no comma: worker --queues lists are comma-separated';
"""

DOWNGRADE = r"""
ALTER TABLE {s}.task DROP CONSTRAINT task_queue_no_comma;

CREATE OR REPLACE FUNCTION {s}.notify_task_queued() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION {s}.notify_task_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(NEW.queue || CASE
                          WHEN NEW.status = 5 THEN '_task_started'
                          WHEN NEW.status IN (4, 6) THEN '_task_queued'
                          ELSE '_task_done' END,
                      NEW.id::text);
    RETURN NULL;
END
$$;

DROP FUNCTION {s}.notify_task(text, text);
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

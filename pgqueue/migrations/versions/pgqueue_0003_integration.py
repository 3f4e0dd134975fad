"""Application integration: enqueue from SQL (triggers, other languages, psql).

Revision ID: pgqueue_0003_integration
Revises: pgqueue_0002_schedule
Create Date: 2026-11-29

``<schema>.queue_task(name, kwargs, ...)`` inserts a task exactly as ``TaskBackend.queue_task``
does: the same lock_id (``<schema>.task_lock_id``, equal to ``LOCK_ID`` in pgqueue/_sql.py;
a test keeps them equal), the same ``ON CONFLICT`` rule (a duplicate of a live task returns
NULL and leaves the transaction usable) and, through the INSERT trigger of pgqueue_0001_core,
the same ``<queue>_task_queued`` notification at commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0003_integration"
down_revision: str | None = "pgqueue_0002_schedule"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE FUNCTION {s}.task_lock_id(name text, kwargs jsonb) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT encode(sha256(convert_to(name || ' ' || kwargs::text, 'UTF8')), 'hex') $$;
COMMENT ON FUNCTION {s}.task_lock_id(text, jsonb) IS
    'lock_id of a non-overlapping task: hex sha256 of the job name, a space and the canonical jsonb text of its kwargs';

CREATE FUNCTION {s}.queue_task(
    name        text,
    kwargs      jsonb DEFAULT '{}',
    queue       text DEFAULT 'tasks',
    priority    integer DEFAULT 0,
    run_at      timestamptz DEFAULT now(),
    expiry      timestamptz DEFAULT NULL,
    can_overlap boolean DEFAULT true,
    meta_params jsonb DEFAULT '{}',
    max_retries integer DEFAULT 0
) RETURNS uuid
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    new_id uuid;
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'queue_task: name must be the name of a job'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kwargs IS NULL OR jsonb_typeof(kwargs) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'queue_task: kwargs must be a JSON object, not ' || coalesce(kwargs::text, 'NULL');
    END IF;
    INSERT INTO {s}.task AS t (name, queue, lock_id, priority, kwargs, meta_params, run_at,
                               expiry, max_retries)
    VALUES (name, coalesce(queue, 'tasks'),
            CASE WHEN coalesce(can_overlap, true) THEN NULL ELSE {s}.task_lock_id(name, kwargs) END,
            coalesce(priority, 0), kwargs, coalesce(meta_params, '{}'), coalesce(run_at, now()),
            expiry, coalesce(max_retries, 0))
    ON CONFLICT (lock_id) WHERE status IN (4, 5, 6) DO NOTHING
    RETURNING t.id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION {s}.queue_task(text, jsonb, text, integer, timestamptz, timestamptz, boolean, jsonb, integer) IS
    'Queue a task from SQL, as TaskBackend.queue_task does; returns its id, or NULL when can_overlap is false and a live task holds the same lock_id. Visible and notified (<queue>_task_queued) at commit. Job defaults (queue, priority, timeout) are not applied: pass them.';
"""

DOWNGRADE = r"""
DROP FUNCTION {s}.queue_task(text, jsonb, text, integer, timestamptz, timestamptz, boolean, jsonb, integer);
DROP FUNCTION {s}.task_lock_id(text, jsonb);
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)

"""Workflows: a task may depend on others and runs only after each of them succeeded.

Revision ID: pgqueue_0007_workflows
Revises: pgqueue_0006_flow
Create Date: 2026-12-07

* ``task.waiting_on`` counts a task's parents that have not ended yet. The claim index
  ``task_claimable`` now holds only tasks with ``waiting_on = 0``, so a waiting task costs a
  claim nothing and a workload without dependencies reads the same index as before.
* ``task_dependency(child, parent)`` holds the edges. Both keys cascade on delete: retention
  deletes only finished tasks, and a child waits only on unfinished parents (``waiting_on``),
  so pruning a finished parent never releases nor strands a child.
* The row trigger ``task_dependents`` (``{s}.release_dependents()``) runs in the
  transaction that ends a parent, whatever ends it (a worker's finish, a revoke, the expiry
  sweep, a rescue): a SUCCESS decrements each child's ``waiting_on``; a FAILURE or REVOKED
  revokes every waiting descendant (its error names the parent), except children whose edge
  says ``run_after_failure`` (``Job.run_after_failure``), which are released instead. Each
  decrement happens under the child's row lock, so a child is released exactly once. Its
  WHEN clause (``task.has_dependents``, set when a first dependent is queued) keeps every
  other task from calling it: a workload without dependencies pays nothing. A parent's
  children are locked in id order; two finishes whose parents share children in crossed
  order can still deadlock, which PostgreSQL detects and the worker's finish retries.
* ``{s}.queue_task(...)`` takes ``depends_on uuid[]`` and ``run_after_failure boolean``.
* The view ``workflow_progress`` lists each dependent task with the states of its parents.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0007_workflows"
down_revision: str | None = "pgqueue_0006_flow"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_QUEUE_TASK = (
    "{s}.queue_task(text, jsonb, text, integer, timestamptz, timestamptz, boolean, jsonb, integer)"
)
_NEW_QUEUE_TASK = (
    "{s}.queue_task(text, jsonb, text, integer, timestamptz, timestamptz, boolean, jsonb, "
    "integer, uuid[], boolean)"
)

UPGRADE = rf"""
ALTER TABLE {{s}}.task ADD COLUMN waiting_on integer NOT NULL DEFAULT 0
    CONSTRAINT task_waiting_on_positive CHECK (waiting_on >= 0);
COMMENT ON COLUMN {{s}}.task.waiting_on IS
    'How many parents (task_dependency) have not ended yet; no worker claims the task before it is 0';
ALTER TABLE {{s}}.task ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN {{s}}.task.has_dependents IS
    'True once a task depends on this one: only then does its end run the trigger task_dependents';

DROP INDEX {{s}}.task_claimable;
CREATE INDEX task_claimable ON {{s}}.task (queue, priority DESC, run_at, id)
    WHERE status IN (4, 6) AND waiting_on = 0;
COMMENT ON INDEX {{s}}.task_claimable IS
    'Claim order of claimable (QUEUED, RETRY, no parent left to wait for) tasks per queue';

CREATE TABLE {{s}}.task_dependency (
    child             uuid NOT NULL REFERENCES {{s}}.task (id) ON DELETE CASCADE,
    parent            uuid NOT NULL REFERENCES {{s}}.task (id) ON DELETE CASCADE,
    position          integer NOT NULL,
    run_after_failure boolean NOT NULL DEFAULT false,
    PRIMARY KEY (child, parent),
    CHECK (child <> parent)
);
CREATE INDEX task_dependency_parent ON {{s}}.task_dependency (parent);
COMMENT ON TABLE {{s}}.task_dependency IS
    'Workflow edges: the child task runs only after the parent task ended SUCCESS';
COMMENT ON COLUMN {{s}}.task_dependency.child IS 'The dependent task';
COMMENT ON COLUMN {{s}}.task_dependency.parent IS 'A task the child waits for';
COMMENT ON COLUMN {{s}}.task_dependency.position IS
    'Place of the parent in the child''s depends_on (1 first): the order consumer.parent_results() keeps';
COMMENT ON COLUMN {{s}}.task_dependency.run_after_failure IS
    'True: the child runs even if this parent ends FAILURE or REVOKED (Job.run_after_failure); false: it is REVOKED';

CREATE FUNCTION {{s}}.release_dependents() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended uuid[];
    doomed uuid[];
    causes text[];
    children uuid[];
    counts integer[];
    batch record;
BEGIN
    -- The revokes below fire this trigger again: the closure is already computed here.
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;
    IF NEW.status = 1 THEN
        -- The common case, kept to two statements: each waiting child one parent fewer.
        PERFORM 1 FROM {{s}}.task
        WHERE id IN (SELECT d.child FROM {{s}}.task_dependency d WHERE d.parent = NEW.id)
        ORDER BY id FOR UPDATE;
        FOR batch IN
            WITH released AS (
                UPDATE {{s}}.task c SET waiting_on = c.waiting_on - 1
                FROM {{s}}.task_dependency d
                WHERE d.parent = NEW.id AND c.id = d.child AND c.status IN (4, 6)
                  AND c.waiting_on > 0
                RETURNING c.id, c.queue, c.waiting_on
            )
            SELECT queue, count(*) AS n, min(id::text) AS one FROM released
            WHERE waiting_on = 0 GROUP BY queue
        LOOP
            PERFORM {{s}}.notify_task(batch.queue || '_task_queued',
                                      CASE WHEN batch.n = 1 THEN batch.one ELSE '*' END);
        END LOOP;
        RETURN NULL;
    END IF;
    ended := ARRAY[NEW.id];
    -- Waiting descendants of a failed or revoked parent that do not opt in: revoked.
    WITH RECURSIVE doom(id, cause, root) AS (
        SELECT d.child,
               format('parent %s (%s) ended %s%s', p.id, p.name, s.name, ': ' || p.error),
               format('%s (%s) ended %s', p.id, p.name, s.name)
        FROM {{s}}.task p
        JOIN {{s}}.state s ON s.code = p.status
        JOIN {{s}}.task_dependency d ON d.parent = p.id AND NOT d.run_after_failure
        JOIN {{s}}.task c ON c.id = d.child AND c.status IN (4, 6)
        WHERE p.id = ANY(ended) AND p.status IN (2, 3)
      UNION
        SELECT d.child, format('parent %s was revoked: its ancestor %s', doom.id, doom.root),
               doom.root
        FROM doom
        JOIN {{s}}.task_dependency d ON d.parent = doom.id AND NOT d.run_after_failure
        JOIN {{s}}.task c ON c.id = d.child AND c.status IN (4, 6)
    )
    SELECT array_agg(id ORDER BY id), array_agg(cause ORDER BY id) INTO doomed, causes
    FROM (SELECT DISTINCT ON (id) id, cause FROM doom ORDER BY id, cause) one;
    doomed := coalesce(doomed, '{{}}');
    -- Children released by one parent each: succeeded, or ended otherwise and opted in.
    SELECT array_agg(child ORDER BY child), array_agg(n ORDER BY child) INTO children, counts
    FROM (
        SELECT d.child, count(*)::integer AS n
        FROM {{s}}.task_dependency d JOIN {{s}}.task p ON p.id = d.parent
        WHERE d.parent = ANY(ended || doomed) AND d.child <> ALL(doomed)
          AND (p.status = 1 OR d.run_after_failure)
        GROUP BY d.child
    ) released;
    children := coalesce(children, '{{}}');
    -- Lock every child in id order: concurrent finishes take them in the same order.
    PERFORM 1 FROM {{s}}.task WHERE id = ANY(doomed || children) ORDER BY id FOR UPDATE;
    UPDATE {{s}}.task t SET status = 3, time_ended = now(), error = x.cause, waiting_on = 0
    FROM unnest(doomed, causes) AS x(id, cause)
    WHERE t.id = x.id AND t.status IN (4, 6);
    UPDATE {{s}}.task t SET waiting_on = greatest(t.waiting_on - x.n, 0)
    FROM unnest(children, counts) AS x(id, n)
    WHERE t.id = x.id AND t.status IN (4, 6) AND t.waiting_on > 0;
    -- Wake the workers of the children just released.
    FOR batch IN
        SELECT queue, count(*) AS n, min(id::text) AS one FROM {{s}}.task
        WHERE id = ANY(children) AND status IN (4, 6) AND waiting_on = 0
        GROUP BY queue
    LOOP
        PERFORM {{s}}.notify_task(batch.queue || '_task_queued',
                                  CASE WHEN batch.n = 1 THEN batch.one ELSE '*' END);
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {{s}}.release_dependents() IS
    'When a parent ends: decrement the waiting_on of its children (SUCCESS, or run_after_failure), revoke the other waiting descendants of a FAILURE or REVOKED parent; children locked in id order';
-- Fires only for a parent (has_dependents) that just ended: the WHEN clause is evaluated
-- without calling the function, so tasks without dependents pay nothing.
CREATE TRIGGER task_dependents AFTER UPDATE OF status ON {{s}}.task
    FOR EACH ROW
    WHEN (NEW.has_dependents AND OLD.status IN (4, 5, 6) AND NEW.status IN (1, 2, 3))
    EXECUTE FUNCTION {{s}}.release_dependents();

DROP FUNCTION {_OLD_QUEUE_TASK};
CREATE FUNCTION {{s}}.queue_task(
    name        text,
    kwargs      jsonb DEFAULT '{{}}',
    queue       text DEFAULT 'tasks',
    priority    integer DEFAULT 0,
    run_at      timestamptz DEFAULT now(),
    expiry      timestamptz DEFAULT NULL,
    can_overlap boolean DEFAULT true,
    meta_params jsonb DEFAULT '{{}}',
    max_retries integer DEFAULT 0,
    depends_on  uuid[] DEFAULT NULL,
    run_after_failure boolean DEFAULT false
) RETURNS uuid
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    new_id uuid;
    parents uuid[] := ARRAY(SELECT DISTINCT unnest(depends_on));
    missing text;
    waiting integer := 0;
    cause text;
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'queue_task: name must be the name of a job'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kwargs IS NULL OR jsonb_typeof(kwargs) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'queue_task: kwargs must be a JSON object, not ' || coalesce(kwargs::text, 'NULL');
    END IF;
    IF cardinality(parents) > 0 THEN
        -- Locked until commit, so no parent ends unseen before the edges below are visible.
        PERFORM 1 FROM {{s}}.task p WHERE p.id = ANY(parents) ORDER BY p.id FOR SHARE;
        SELECT string_agg(x::text, ', ') INTO missing FROM unnest(parents) AS x
        WHERE NOT EXISTS (SELECT 1 FROM {{s}}.task p WHERE p.id = x);
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'queue_task: no task of this schema has id %: a task can depend only on existing tasks of its schema', missing
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        SELECT count(*) FILTER (WHERE p.status IN (4, 5, 6)),
               min(format('parent %s (%s) ended %s%s', p.id, p.name, s.name, ': ' || p.error))
                   FILTER (WHERE p.status IN (2, 3) AND NOT coalesce(run_after_failure, false))
        INTO waiting, cause
        FROM {{s}}.task p JOIN {{s}}.state s ON s.code = p.status
        WHERE p.id = ANY(parents);
    END IF;
    INSERT INTO {{s}}.task AS t (name, queue, lock_id, priority, kwargs, meta_params, run_at,
                                 expiry, max_retries, waiting_on, status, error, time_ended)
    VALUES (name, coalesce(queue, 'tasks'),
            CASE WHEN coalesce(can_overlap, true) THEN NULL ELSE {{s}}.task_lock_id(name, kwargs) END,
            coalesce(priority, 0), kwargs, coalesce(meta_params, '{{}}'), coalesce(run_at, now()),
            expiry, coalesce(max_retries, 0), CASE WHEN cause IS NULL THEN waiting ELSE 0 END,
            CASE WHEN cause IS NULL THEN 6 ELSE 3 END, cause,
            CASE WHEN cause IS NOT NULL THEN now() END)
    ON CONFLICT (lock_id) WHERE status IN (4, 5, 6) DO NOTHING
    RETURNING t.id INTO new_id;
    IF new_id IS NOT NULL AND cardinality(parents) > 0 THEN
        UPDATE {{s}}.task p SET has_dependents = true
        WHERE p.id = ANY(parents) AND NOT p.has_dependents;
        INSERT INTO {{s}}.task_dependency (child, parent, position, run_after_failure)
        SELECT new_id, x.id, x.pos, coalesce(run_after_failure, false)
        FROM unnest(parents) WITH ORDINALITY AS x(id, pos);
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION {_NEW_QUEUE_TASK} IS
    'Queue a task from SQL, as TaskBackend.queue_task does; returns its id, or NULL when can_overlap is false and a live task holds the same lock_id. depends_on: ids of tasks it runs after (each must end SUCCESS, unless run_after_failure); unknown ids raise. Visible and notified (<queue>_task_queued) at commit. Job defaults (queue, priority, timeout) are not applied: pass them.';

CREATE VIEW {{s}}.workflow_progress AS
SELECT c.id, c.name, c.queue, cs.name AS state, c.waiting_on,
       count(*) AS parents,
       count(*) FILTER (WHERE p.status = 1) AS parents_succeeded,
       count(*) FILTER (WHERE p.status = 2) AS parents_failed,
       count(*) FILTER (WHERE p.status = 3) AS parents_revoked,
       count(*) FILTER (WHERE p.status IN (4, 5, 6)) AS parents_pending
FROM {{s}}.task c
JOIN {{s}}.state cs ON cs.code = c.status
JOIN {{s}}.task_dependency d ON d.child = c.id
JOIN {{s}}.task p ON p.id = d.parent
GROUP BY c.id, cs.name;
COMMENT ON VIEW {{s}}.workflow_progress IS
    'Each task that depends on others, with how many of its parents succeeded, failed, were revoked or are still pending';
COMMENT ON COLUMN {{s}}.workflow_progress.id IS 'Id of the dependent task';
COMMENT ON COLUMN {{s}}.workflow_progress.name IS 'Job name of the dependent task';
COMMENT ON COLUMN {{s}}.workflow_progress.queue IS 'Queue of the dependent task';
COMMENT ON COLUMN {{s}}.workflow_progress.waiting_on IS
    'How many parents it still waits for (0 once released, or once revoked)';
COMMENT ON COLUMN {{s}}.workflow_progress.state IS 'State name of the dependent task';
COMMENT ON COLUMN {{s}}.workflow_progress.parents IS 'How many parents the task has (pruned parents are gone)';
COMMENT ON COLUMN {{s}}.workflow_progress.parents_succeeded IS 'Parents that ended SUCCESS';
COMMENT ON COLUMN {{s}}.workflow_progress.parents_failed IS 'Parents that ended FAILURE';
COMMENT ON COLUMN {{s}}.workflow_progress.parents_revoked IS 'Parents that ended REVOKED';
COMMENT ON COLUMN {{s}}.workflow_progress.parents_pending IS 'Parents not ended yet (QUEUED, STARTED, RETRY)';
"""

DOWNGRADE = r"""
DROP VIEW {s}.workflow_progress;
DROP TRIGGER task_dependents ON {s}.task;
DROP FUNCTION {s}.release_dependents();
DROP TABLE {s}.task_dependency;
DROP INDEX {s}.task_claimable;
CREATE INDEX task_claimable ON {s}.task (queue, priority DESC, run_at, id) WHERE status IN (4, 6);
COMMENT ON INDEX {s}.task_claimable IS 'Claim order of claimable (QUEUED, RETRY) tasks per queue';
ALTER TABLE {s}.task DROP COLUMN waiting_on;
ALTER TABLE {s}.task DROP COLUMN has_dependents;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    from pgqueue.migrations.versions.pgqueue_0003_integration import UPGRADE as INTEGRATION

    forget_revision(revision)
    run_sql(f"DROP FUNCTION {_NEW_QUEUE_TASK};")
    run_sql(_only_queue_task(INTEGRATION))
    run_sql(DOWNGRADE)


def _only_queue_task(integration: str) -> str:
    """The CREATE FUNCTION queue_task and its COMMENT of revision pgqueue_0003_integration."""
    start = integration.index("CREATE FUNCTION {s}.queue_task(")
    return integration[start:]

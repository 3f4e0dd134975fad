"""Workflows: one decrement per dependent and finish statement; an open enqueue no longer
holds up its parents' finish.

Revision ID: pgqueue_0011_callback_batch
Revises: pgqueue_0010_flow_turns
Create Date: 2026-12-07

* The row trigger ``task_dependents`` (revision pgqueue_0007_workflows) decremented a child's
  ``waiting_on`` once per parent that ended: the members of a group finishing on several
  workers all updated the one callback row, each update a new version of it (never HOT:
  ``waiting_on`` is in the predicate of ``task_claimable``). It is replaced by two triggers.
  The row trigger ``task_dependents_ended`` keeps the same WHEN clause (a parent with
  ``has_dependents`` that just ended; no other row calls it, so a workload without
  dependencies pays nothing per row) and only notes the parent's id in a transaction-local
  setting (``pgqueue.ended_parents_<oid of task>``). The statement trigger
  ``task_dependents_batch`` (``{s}.release_dependents_batch()``, after every UPDATE that sets
  ``status``; it fires after the row triggers of its statement) takes the noted parents
  together: each waiting child gets ONE update per statement (``waiting_on`` minus the number
  of its parents that ended SUCCESS, or ended otherwise with ``run_after_failure``), and the
  children are locked in id order first, so two finish statements never wait on each other
  crosswise. A FAILURE or REVOKED parent still revokes its waiting descendants (closure
  computed once); the revokes fire both triggers again, which then only release their
  ``run_after_failure`` children. A statement that ended no such parent (every claim, every
  other finish) finds the setting empty and returns. A rollback (or a rolled-back savepoint)
  takes the notes back with it.
* ``task_new_dependent`` (``{s}.settle_new_dependent()``), a constraint trigger deferred to
  commit, runs once per task queued with parents not ended (``waiting_on > 0``). The enqueue
  itself now locks no parent (it held FOR SHARE on them until commit, and set their
  ``has_dependents``, so a parent's finish waited for the enqueuing transaction). At commit
  the trigger locks the parents this transaction did not create (id order), so a finish
  still in progress commits first and none can end between this check and the commit; sets
  their ``has_dependents``; and counts again the parents not ended: a parent that ended
  after the enqueue read it (its finish did not see the uncommitted edge) is counted here,
  one that ends after this commit is counted by its finish. A child whose parent ended
  FAILURE or REVOKED meanwhile is revoked. A finish waits at most for the commit of an
  enqueue, never for its open transaction.
* ``{s}.queue_task(...)`` no longer locks nor updates the parents (the trigger above does at
  commit).
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql
from pgqueue.migrations.versions.pgqueue_0010_flow_turns import UPGRADE as FLOW_TURNS

revision: str = "pgqueue_0011_callback_batch"
down_revision: str | None = "pgqueue_0010_flow_turns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_LOCK = (
    "-- Locked until commit, so no parent ends unseen before the edges below are visible.\n"
    "        PERFORM 1 FROM {s}.task p WHERE p.id = ANY(parents) ORDER BY p.id FOR SHARE;"
)
_OLD_FLAG = (
    "UPDATE {s}.task p SET has_dependents = true\n"
    "        WHERE p.id = ANY(parents) AND NOT p.has_dependents;"
)
_NEW_LOCK = "-- No lock on the parents: the trigger task_new_dependent checks them again at commit."

UPGRADE = r"""
DROP TRIGGER task_dependents ON {s}.task;

CREATE FUNCTION {s}.note_ended_parent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    noted text := current_setting('pgqueue.ended_parents_' || TG_RELID, true);
BEGIN
    PERFORM set_config('pgqueue.ended_parents_' || TG_RELID,
                       CASE WHEN coalesce(noted, '') = '' THEN NEW.id::text
                            ELSE noted || ',' || NEW.id::text END,
                       true);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.note_ended_parent() IS
    'Notes a parent that just ended in the transaction-local setting pgqueue.ended_parents_<table oid>, for the statement trigger task_dependents_batch';
-- Fires only for a parent (has_dependents) that just ended: the WHEN clause is evaluated
-- without calling the function, so tasks without dependents pay nothing.
CREATE TRIGGER task_dependents_ended AFTER UPDATE OF status ON {s}.task
    FOR EACH ROW
    WHEN (NEW.has_dependents AND OLD.status IN (4, 5, 6) AND NEW.status IN (1, 2, 3))
    EXECUTE FUNCTION {s}.note_ended_parent();

CREATE FUNCTION {s}.release_dependents_batch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    noted text := current_setting('pgqueue.ended_parents_' || TG_RELID, true);
    ended uuid[];
    doomed uuid[];
    causes text[];
    children uuid[];
    counts integer[];
    batch record;
BEGIN
    -- Most statements (claims, finishes of tasks nobody depends on) stop here.
    IF coalesce(noted, '') = '' THEN
        RETURN NULL;
    END IF;
    -- Taken: the updates below fire these triggers again and note their own.
    PERFORM set_config('pgqueue.ended_parents_' || TG_RELID, '', true);
    ended := ARRAY(SELECT DISTINCT x FROM unnest(string_to_array(noted, ',')::uuid[]) AS x ORDER BY x);
    -- Waiting descendants of a failed or revoked parent that do not opt in: revoked.
    WITH RECURSIVE doom(id, cause, root) AS (
        SELECT d.child,
               format('parent %s (%s) ended %s%s', p.id, p.name, s.name, ': ' || p.error),
               format('%s (%s) ended %s', p.id, p.name, s.name)
        FROM {s}.task p
        JOIN {s}.state s ON s.code = p.status
        JOIN {s}.task_dependency d ON d.parent = p.id AND NOT d.run_after_failure
        JOIN {s}.task c ON c.id = d.child AND c.status IN (4, 6)
        WHERE p.id = ANY(ended) AND p.status IN (2, 3)
      UNION
        SELECT d.child, format('parent %s was revoked: its ancestor %s', doom.id, doom.root),
               doom.root
        FROM doom
        JOIN {s}.task_dependency d ON d.parent = doom.id AND NOT d.run_after_failure
        JOIN {s}.task c ON c.id = d.child AND c.status IN (4, 6)
    )
    SELECT array_agg(id ORDER BY id), array_agg(cause ORDER BY id) INTO doomed, causes
    FROM (SELECT DISTINCT ON (id) id, cause FROM doom ORDER BY id, cause) one;
    doomed := coalesce(doomed, '{}');
    -- Each other waiting child: how many of its parents ended here and release it.
    SELECT array_agg(child ORDER BY child), array_agg(n ORDER BY child) INTO children, counts
    FROM (
        SELECT d.child, count(*)::integer AS n
        FROM {s}.task_dependency d JOIN {s}.task p ON p.id = d.parent
        WHERE d.parent = ANY(ended) AND NOT (d.child = ANY(doomed))
          AND (p.status = 1 OR d.run_after_failure)
        GROUP BY d.child
    ) released;
    children := coalesce(children, '{}');
    -- Lock every child in id order: concurrent finish statements take them in the same order.
    PERFORM 1 FROM {s}.task WHERE id = ANY(doomed || children) ORDER BY id FOR NO KEY UPDATE;
    -- One update per child and statement, however many of its parents ended in it.
    UPDATE {s}.task t SET waiting_on = greatest(t.waiting_on - x.n, 0)
    FROM unnest(children, counts) AS x(id, n)
    WHERE t.id = x.id AND t.status IN (4, 6) AND t.waiting_on > 0;
    -- These fire this trigger again: it releases their run_after_failure children.
    UPDATE {s}.task t SET status = 3, time_ended = now(), error = x.cause, waiting_on = 0
    FROM unnest(doomed, causes) AS x(id, cause)
    WHERE t.id = x.id AND t.status IN (4, 6);
    -- Wake the workers of the children just released.
    FOR batch IN
        SELECT queue, count(*) AS n, min(id::text) AS one FROM {s}.task
        WHERE id = ANY(children) AND status IN (4, 6) AND waiting_on = 0
        GROUP BY queue
    LOOP
        PERFORM {s}.notify_task(batch.queue || '_task_queued',
                                CASE WHEN batch.n = 1 THEN batch.one ELSE '*' END);
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.release_dependents_batch() IS
    'After each UPDATE of task.status: for the parents (has_dependents) the statement ended (noted by task_dependents_ended), one decrement of waiting_on per waiting child (SUCCESS, or run_after_failure) and the revoke of the other waiting descendants of a FAILURE or REVOKED parent; children locked in id order';
-- After the row triggers of the same statement (AFTER events fire in the order queued).
CREATE TRIGGER task_dependents_batch AFTER UPDATE OF status ON {s}.task
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.release_dependents_batch();

CREATE FUNCTION {s}.settle_new_dependent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    waiting integer;
    cause text;
    released text;
BEGIN
    -- The parents other transactions created, in id order: a finish of one still running
    -- commits first; from here to this commit none can end (nor be flagged) unseen.
    PERFORM 1 FROM {s}.task p
    WHERE p.id IN (SELECT d.parent FROM {s}.task_dependency d WHERE d.child = NEW.id)
      AND p.xmin <> pg_current_xact_id()::xid
    ORDER BY p.id FOR NO KEY UPDATE;
    -- From now on a parent's end runs task_dependents_batch, which sees this edge.
    UPDATE {s}.task p SET has_dependents = true
    WHERE p.id IN (SELECT d.parent FROM {s}.task_dependency d WHERE d.child = NEW.id)
      AND NOT p.has_dependents AND p.status IN (4, 5, 6);
    -- Count again what the enqueue counted on its snapshot: a parent may have ended since.
    SELECT count(*) FILTER (WHERE p.status IN (4, 5, 6)),
           min(format('parent %s (%s) ended %s%s', p.id, p.name, s.name, ': ' || p.error))
               FILTER (WHERE p.status IN (2, 3) AND NOT d.run_after_failure)
    INTO waiting, cause
    FROM {s}.task_dependency d
    JOIN {s}.task p ON p.id = d.parent
    JOIN {s}.state s ON s.code = p.status
    WHERE d.child = NEW.id;
    IF cause IS NOT NULL THEN
        -- Fires task_dependents_batch: the child's own waiting descendants follow.
        UPDATE {s}.task t SET status = 3, time_ended = now(), error = cause, waiting_on = 0
        WHERE t.id = NEW.id AND t.status IN (4, 6);
        RETURN NULL;
    END IF;
    UPDATE {s}.task t SET waiting_on = waiting
    WHERE t.id = NEW.id AND t.status IN (4, 6) AND t.waiting_on <> waiting
    RETURNING t.queue INTO released;
    IF released IS NOT NULL AND waiting = 0 THEN
        PERFORM {s}.notify_task(released || '_task_queued', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.settle_new_dependent() IS
    'At the commit of a task queued with parents not ended: lock the parents of other transactions (id order), set their has_dependents, count again the parents not ended (waiting_on) and revoke the task when one ended FAILURE or REVOKED without run_after_failure';
CREATE CONSTRAINT TRIGGER task_new_dependent AFTER INSERT ON {s}.task
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.waiting_on > 0)
    EXECUTE FUNCTION {s}.settle_new_dependent();
"""

DOWNGRADE = r"""
DROP TRIGGER task_new_dependent ON {s}.task;
DROP FUNCTION {s}.settle_new_dependent();
DROP TRIGGER task_dependents_batch ON {s}.task;
DROP FUNCTION {s}.release_dependents_batch();
DROP TRIGGER task_dependents_ended ON {s}.task;
DROP FUNCTION {s}.note_ended_parent();
CREATE TRIGGER task_dependents AFTER UPDATE OF status ON {s}.task
    FOR EACH ROW
    WHEN (NEW.has_dependents AND OLD.status IN (4, 5, 6) AND NEW.status IN (1, 2, 3))
    EXECUTE FUNCTION {s}.release_dependents();
"""


def _queue_task(lock: str, flag: str) -> str:
    """``{s}.queue_task`` as revision pgqueue_0010_flow_turns created it, with its statement
    locking the parents replaced by ``lock`` and the one flagging them by ``flag``."""
    start = FLOW_TURNS.index("CREATE FUNCTION {s}.queue_task(")
    end = FLOW_TURNS.index("$$;", start) + len("$$;")
    body = FLOW_TURNS[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    if _OLD_LOCK not in body or _OLD_FLAG not in body:
        raise RuntimeError("queue_task of pgqueue_0010_flow_turns is not the one expected")
    return body.replace(_OLD_LOCK, lock).replace(_OLD_FLAG, flag)


def upgrade() -> None:
    run_sql(UPGRADE + _queue_task(_NEW_LOCK, ""))
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE + _queue_task(_OLD_LOCK, _OLD_FLAG))

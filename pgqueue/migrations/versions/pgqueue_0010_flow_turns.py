"""Flow control, continued (issue 13): the keys of a queue take turns, SQL enqueues get limits.

Revision ID: pgqueue_0010_flow_turns
Revises: pgqueue_0009_schedules
Create Date: 2026-12-07

* **Round robin between limit keys.** Before, the claim read the first ``limit`` due tasks of a
  queue and admitted what their scopes (job and ``limit_key``) allowed, so one key at its limit
  at the head of the queue held back every key behind it. Now the limited tasks of a queue are
  taken by ``flow_take(queue, jobs, want, budget)``: it walks the scopes with claimable limited
  tasks in index order (``task_claimable_scope``, one probe per scope, never the backlog of a
  scope), starting after the scope the queue's previous claim stopped at (``flow_turn``) and
  wrapping around, and gives each scope with room one task in the first round (a key with
  10,000 queued tasks gets one turn like a key with one), then shares what is left to take
  between the scopes with room, one statement per scope. A scope is admitted under a transaction-scoped
  advisory lock taken with ``pg_try_advisory_xact_lock`` (the lock ``flow_free`` takes): a
  scope another claim is admitting into is tried again a few times (15 ms of waits at most per
  claim), then skipped, never waited for on the lock, so claims spread over the keys and never deadlock; the counts are read after the lock, in a fresh snapshot, so no two
  claims admit into the last free slot (F29). It looks at ``budget`` scopes at most and locks
  only the tasks it returns.
* **flow_turn**: per queue, the scope where the last claim stopped (the round-robin cursor). A
  claim moves it only when no other claim holds the row (``SKIP LOCKED``): claims never wait
  for each other on it.
* **queue_task(...)** takes ``limit_key``, ``concurrency``, ``rate_count`` and
  ``rate_seconds``: a task queued by SQL is limited exactly as one queued by the library when
  it is given the job's limits and its key value (the library stores the same four columns).
* **flow_start retention**: the start log of a scope is trimmed when that scope is admitted;
  the rows of scopes never used again are deleted by the workers' maintenance in batches
  (``Store.prune_flow_starts``), the index ``flow_start_reopens`` finds them.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0010_flow_turns"
down_revision: str | None = "pgqueue_0009_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_QUEUE_TASK = (
    "{s}.queue_task(text, jsonb, text, integer, timestamptz, timestamptz, boolean, jsonb, "
    "integer, uuid[], boolean)"
)
_NEW_QUEUE_TASK = (
    "{s}.queue_task(text, jsonb, text, integer, timestamptz, timestamptz, boolean, jsonb, "
    "integer, uuid[], boolean, text, integer, integer, float8)"
)

#: The claimable limited tasks of a scope, in claim order (the pick of ``flow_take``).
_PICK = """
        SELECT x.id, x.priority, x.run_at, x.limit_key, x.rate_count, x.rate_seconds
        INTO pick, t_priority, t_run_at, t_limit_key, t_rate_count, t_rate_seconds
        FROM {s}.task x
        WHERE x.queue = queue_name AND x.name = {name}
          AND {s}.flow_scope(x.name, x.limit_key, NULL) = {scope}
          AND x.status IN (4, 6) AND x.waiting_on = 0
          AND (x.concurrency IS NOT NULL OR x.rate_count IS NOT NULL)
          AND x.run_at <= now() AND (x.expiry IS NULL OR x.expiry > now())
          AND x.id <> ALL(picked)
        ORDER BY x.priority DESC, x.run_at, x.id
        LIMIT 1
        FOR NO KEY UPDATE SKIP LOCKED;"""

#: The next scope with a claimable limited task of a queue, in index order.
_NEXT_SCOPE = """
            SELECT x.name, {s}.flow_scope(x.name, x.limit_key, NULL), x.limit_key,
                   x.concurrency, x.rate_count
            INTO k_name, k_scope, k_key, k_most, k_rate_n
            FROM {s}.task x
            WHERE x.queue = queue_name AND x.status IN (4, 6) AND x.waiting_on = 0
              AND (x.concurrency IS NOT NULL OR x.rate_count IS NOT NULL){after}
            ORDER BY x.name, {s}.flow_scope(x.name, x.limit_key, NULL)
            LIMIT 1;"""

UPGRADE = (
    r"""
CREATE INDEX task_claimable_scope ON {s}.task
    (queue, name, {s}.flow_scope(name, limit_key, NULL), priority DESC, run_at, id)
    WHERE status IN (4, 6) AND waiting_on = 0
      AND (concurrency IS NOT NULL OR rate_count IS NOT NULL);
COMMENT ON INDEX {s}.task_claimable_scope IS
    'Claimable tasks of limited jobs per queue and scope (job, limit_key), in claim order: flow_take walks the scopes of a queue in turn';

CREATE TABLE {s}.flow_turn (
    queue text PRIMARY KEY,
    name  text NOT NULL,
    scope text NOT NULL
);
COMMENT ON TABLE {s}.flow_turn IS
    'Per queue, the scope (job, limit_key) where the last claim stopped: the next claim starts after it (round robin between limit keys)';
COMMENT ON COLUMN {s}.flow_turn.queue IS 'Queue name';
COMMENT ON COLUMN {s}.flow_turn.name IS 'Job name of the scope';
COMMENT ON COLUMN {s}.flow_turn.scope IS 'The scope (flow_scope of the job and its limit_key)';

CREATE INDEX flow_start_reopens ON {s}.flow_start (reopens_at);
COMMENT ON INDEX {s}.flow_start_reopens IS
    'Start-log rows by the end of their window: what the maintenance deletes once it passed';

CREATE FUNCTION {s}.flow_take(queue_name text, jobs text[], want integer, budget integer)
    RETURNS TABLE (task_id uuid, turn integer, t_name text, t_priority integer,
                   t_run_at timestamptz, t_limit_key text, t_rate_count integer,
                   t_rate_seconds float8)
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    start_name text;
    start_scope text;
    cur_name text;
    cur_scope text;
    k_name text;
    k_scope text;
    k_key text;
    k_most integer;
    k_rate_n integer;
    wrapped boolean := false;
    visited integer := 0;
    used integer;
    free integer;
    pick uuid;
    picked uuid[] := '{}';
    more_names text[] := '{}';
    more_scopes text[] := '{}';
    room integer[] := '{}';
    lap integer := 1;
    took integer;
    open_scopes integer;
    share integer;
    asked integer;
    got integer;
    rec record;
    locked boolean;
    waits integer := 0;
    i integer;
BEGIN
    IF want IS NULL OR want <= 0 THEN
        RETURN;
    END IF;
    SELECT f.name, f.scope INTO start_name, start_scope
    FROM {s}.flow_turn f WHERE f.queue = queue_name;
    cur_name := start_name;
    cur_scope := start_scope;
    -- Round 1: each scope after the cursor (then from the first, up to the cursor) that has
    -- room gets one task, until want tasks are taken or budget scopes were looked at.
    WHILE visited < budget AND cardinality(picked) < want LOOP
        IF cur_name IS NULL THEN"""
    + _NEXT_SCOPE.format(s="{s}", after="")
    + r"""
        ELSE"""
    + _NEXT_SCOPE.format(
        s="{s}",
        after="\n              AND (x.name, {s}.flow_scope(x.name, x.limit_key, NULL))"
        " > (cur_name, cur_scope)",
    )
    + r"""
        END IF;
        IF NOT FOUND THEN
            -- The end: wrap around to the first scope, unless the walk began there (no
            -- cursor yet) or did already: each scope is looked at once per claim (its own
            -- picks are not counted yet, a second look would admit them again).
            EXIT WHEN wrapped OR start_name IS NULL;
            wrapped := true;
            cur_name := NULL;
            cur_scope := NULL;
            CONTINUE;
        END IF;
        EXIT WHEN wrapped AND start_name IS NOT NULL
                  AND (k_name, k_scope) > (start_name, start_scope);
        cur_name := k_name;
        cur_scope := k_scope;
        visited := visited + 1;
        CONTINUE WHEN NOT (k_name = ANY(jobs));
        -- Another claim admitting into this scope: try again a few times (it commits within
        -- milliseconds, then what it left is ours; 15 ms of waits at most per call, whatever
        -- the number of such scopes), never waiting on the lock itself (claims walk the
        -- scopes from different places: waits could deadlock), then leave the scope to it.
        locked := pg_try_advisory_xact_lock(hashtext('pgqueue flow'), hashtext(k_scope));
        WHILE NOT locked AND waits < 5 LOOP
            waits := waits + 1;
            PERFORM pg_sleep(0.001 * waits);
            locked := pg_try_advisory_xact_lock(hashtext('pgqueue flow'), hashtext(k_scope));
        END LOOP;
        CONTINUE WHEN NOT locked;
        -- Counted in a fresh snapshot (VOLATILE): every claim that held the lock before has
        -- committed, and is counted.
        free := 2147483647;
        IF k_most IS NOT NULL THEN
            IF k_key IS NULL THEN
                SELECT count(*) INTO used FROM {s}.task x
                WHERE x.status = 5 AND x.concurrency IS NOT NULL AND x.name = k_name
                  AND x.limit_key IS NULL;
            ELSE
                SELECT count(*) INTO used FROM {s}.task x
                WHERE x.status = 5 AND x.concurrency IS NOT NULL AND x.name = k_name
                  AND x.limit_key = k_key;
            END IF;
            free := k_most - used;
        END IF;
        IF k_rate_n IS NOT NULL THEN
            -- now(): the start time of this claim's tasks (time_started) is the time the
            -- windows are measured on, so no window of time_started holds more than rate_n.
            DELETE FROM {s}.flow_start f WHERE f.scope = k_scope AND f.reopens_at <= now();
            SELECT count(*) INTO used FROM {s}.flow_start f WHERE f.scope = k_scope;
            free := least(free, k_rate_n - used);
        END IF;
        CONTINUE WHEN free <= 0;"""
    + _PICK.format(s="{s}", name="k_name", scope="k_scope")
    + r"""
        CONTINUE WHEN NOT FOUND;
        picked := picked || pick;
        task_id := pick;
        turn := 1;
        t_name := k_name;
        RETURN NEXT;
        IF free > 1 THEN
            more_names := more_names || k_name;
            more_scopes := more_scopes || k_scope;
            room := room || (free - 1);
        END IF;
    END LOOP;
    -- Then the scopes with room left share what is left to take, in the same order: each
    -- takes its share (at most its room) in one statement, turns counting on from 2.
    WHILE cardinality(picked) < want LOOP
        open_scopes := 0;
        FOR i IN 1 .. cardinality(more_scopes) LOOP
            IF room[i] > 0 THEN
                open_scopes := open_scopes + 1;
            END IF;
        END LOOP;
        EXIT WHEN open_scopes = 0;
        share := (want - cardinality(picked) + open_scopes - 1) / open_scopes;
        took := 0;
        FOR i IN 1 .. cardinality(more_scopes) LOOP
            EXIT WHEN cardinality(picked) >= want;
            CONTINUE WHEN room[i] <= 0;
            asked := least(room[i], share, want - cardinality(picked));
            got := 0;
            FOR rec IN
                SELECT x.id, x.priority, x.run_at, x.limit_key, x.rate_count, x.rate_seconds
                FROM {s}.task x
                WHERE x.queue = queue_name AND x.name = more_names[i]
                  AND {s}.flow_scope(x.name, x.limit_key, NULL) = more_scopes[i]
                  AND x.status IN (4, 6) AND x.waiting_on = 0
                  AND (x.concurrency IS NOT NULL OR x.rate_count IS NOT NULL)
                  AND x.run_at <= now() AND (x.expiry IS NULL OR x.expiry > now())
                  AND x.id <> ALL(picked)
                ORDER BY x.priority DESC, x.run_at, x.id
                LIMIT asked
                FOR NO KEY UPDATE SKIP LOCKED
            LOOP
                got := got + 1;
                picked := picked || rec.id;
                task_id := rec.id;
                turn := lap + got;
                t_name := more_names[i];
                t_priority := rec.priority;
                t_run_at := rec.run_at;
                t_limit_key := rec.limit_key;
                t_rate_count := rec.rate_count;
                t_rate_seconds := rec.rate_seconds;
                RETURN NEXT;
            END LOOP;
            room[i] := CASE WHEN got < asked THEN 0 ELSE room[i] - got END;
            took := took + got;
        END LOOP;
        EXIT WHEN took = 0;
        lap := lap + share;
    END LOOP;
    -- The next claim starts after the last scope looked at, unless another claim is moving
    -- the cursor right now (then it moves it).
    IF cur_name IS NOT NULL AND (cur_name, cur_scope) IS DISTINCT FROM (start_name, start_scope) THEN
        PERFORM 1 FROM {s}.flow_turn f WHERE f.queue = queue_name FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            UPDATE {s}.flow_turn f SET name = cur_name, scope = cur_scope
            WHERE f.queue = queue_name;
        ELSIF start_name IS NULL THEN
            INSERT INTO {s}.flow_turn (queue, name, scope) VALUES (queue_name, cur_name, cur_scope)
            ON CONFLICT (queue) DO NOTHING;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION {s}.flow_take(text, text[], integer, integer) IS
    'Up to want claimable tasks of limited jobs of a queue, locked, that their scopes (job, limit_key) admit now: scopes take turns: one task per scope first, starting after the scope of flow_turn, then what is left shared between the scopes with room; at most budget scopes looked at; a scope another claim is admitting into is tried again (15 ms of waits at most per call), then skipped. turn: the place of a task in that order; t_*: the task columns the claim needs (called by the claim)';

"""
    + r"""
DROP FUNCTION """
    + _OLD_QUEUE_TASK
    + r""";
CREATE FUNCTION {s}.queue_task(
    name        text,
    kwargs      jsonb DEFAULT '{}',
    queue       text DEFAULT 'tasks',
    priority    integer DEFAULT 0,
    run_at      timestamptz DEFAULT now(),
    expiry      timestamptz DEFAULT NULL,
    can_overlap boolean DEFAULT true,
    meta_params jsonb DEFAULT '{}',
    max_retries integer DEFAULT 0,
    depends_on  uuid[] DEFAULT NULL,
    run_after_failure boolean DEFAULT false,
    limit_key   text DEFAULT NULL,
    concurrency integer DEFAULT NULL,
    rate_count  integer DEFAULT NULL,
    rate_seconds float8 DEFAULT NULL
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
    IF concurrency IS NOT NULL AND concurrency < 1 THEN
        RAISE EXCEPTION 'queue_task: concurrency must be >= 1 (or NULL for no limit), not %', concurrency
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (rate_count IS NULL) <> (rate_seconds IS NULL) OR rate_count < 1 OR rate_seconds <= 0 THEN
        RAISE EXCEPTION 'queue_task: give rate_count >= 1 and rate_seconds > 0 together (or neither), not % and %',
            coalesce(rate_count::text, 'NULL'), coalesce(rate_seconds::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF limit_key IS NOT NULL AND concurrency IS NULL AND rate_count IS NULL THEN
        RAISE EXCEPTION 'queue_task: limit_key % limits nothing without concurrency or rate_count', quote_literal(limit_key)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the job''s limits too: concurrency => N and/or rate_count => N, rate_seconds => S.';
    END IF;
    IF cardinality(parents) > 0 THEN
        -- Locked until commit, so no parent ends unseen before the edges below are visible.
        PERFORM 1 FROM {s}.task p WHERE p.id = ANY(parents) ORDER BY p.id FOR SHARE;
        SELECT string_agg(x::text, ', ') INTO missing FROM unnest(parents) AS x
        WHERE NOT EXISTS (SELECT 1 FROM {s}.task p WHERE p.id = x);
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'queue_task: no task of this schema has id %: a task can depend only on existing tasks of its schema', missing
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        SELECT count(*) FILTER (WHERE p.status IN (4, 5, 6)),
               min(format('parent %s (%s) ended %s%s', p.id, p.name, s.name, ': ' || p.error))
                   FILTER (WHERE p.status IN (2, 3) AND NOT coalesce(run_after_failure, false))
        INTO waiting, cause
        FROM {s}.task p JOIN {s}.state s ON s.code = p.status
        WHERE p.id = ANY(parents);
    END IF;
    INSERT INTO {s}.task AS t (name, queue, lock_id, priority, kwargs, meta_params, run_at,
                               expiry, max_retries, waiting_on, status, error, time_ended,
                               limit_key, concurrency, rate_count, rate_seconds)
    VALUES (name, coalesce(queue, 'tasks'),
            CASE WHEN coalesce(can_overlap, true) THEN NULL ELSE {s}.task_lock_id(name, kwargs) END,
            coalesce(priority, 0), kwargs, coalesce(meta_params, '{}'), coalesce(run_at, now()),
            expiry, coalesce(max_retries, 0), CASE WHEN cause IS NULL THEN waiting ELSE 0 END,
            CASE WHEN cause IS NULL THEN 6 ELSE 3 END, cause,
            CASE WHEN cause IS NOT NULL THEN now() END,
            limit_key, concurrency, rate_count, rate_seconds)
    ON CONFLICT (lock_id) WHERE status IN (4, 5, 6) DO NOTHING
    RETURNING t.id INTO new_id;
    IF new_id IS NOT NULL AND cardinality(parents) > 0 THEN
        UPDATE {s}.task p SET has_dependents = true
        WHERE p.id = ANY(parents) AND NOT p.has_dependents;
        INSERT INTO {s}.task_dependency (child, parent, position, run_after_failure)
        SELECT new_id, x.id, x.pos, coalesce(run_after_failure, false)
        FROM unnest(parents) WITH ORDINALITY AS x(id, pos);
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION """
    + _NEW_QUEUE_TASK
    + r""" IS
    'Queue a task from SQL, as TaskBackend.queue_task does; returns its id, or NULL when can_overlap is false and a live task holds the same lock_id. depends_on: ids of tasks it runs after (each must end SUCCESS, unless run_after_failure); unknown ids raise. limit_key, concurrency, rate_count, rate_seconds: the job''s flow-control limits and this task''s key value (as Job.concurrency, Job.rate_limit and Job.limit_key store them); NULL: not limited. Visible and notified (<queue>_task_queued) at commit. Job defaults (queue, priority, timeout, limits) are not applied: pass them.';
"""
)

DOWNGRADE = r"""
DROP FUNCTION {s}.flow_take(text, text[], integer, integer);
DROP INDEX {s}.flow_start_reopens;
DROP TABLE {s}.flow_turn;
DROP INDEX {s}.task_claimable_scope;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    from pgqueue.migrations.versions.pgqueue_0007_workflows import UPGRADE as WORKFLOWS

    forget_revision(revision)
    run_sql(f"DROP FUNCTION {_NEW_QUEUE_TASK};")
    run_sql(_queue_task_of(WORKFLOWS))
    run_sql(DOWNGRADE)


def _queue_task_of(workflows: str) -> str:
    """The CREATE FUNCTION queue_task and its COMMENT of revision pgqueue_0007_workflows."""
    start = workflows.index("CREATE FUNCTION {s}.queue_task(")
    end = workflows.index("CREATE VIEW {s}.workflow_progress")
    return workflows[start:end]

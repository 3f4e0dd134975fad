"""Workflows: enqueue tasks that depend on others, and read a task's parents and children.

The rule itself lives in the database (revisions pgqueue_0007_workflows and
pgqueue_0011_callback_batch): ``task.waiting_on`` counts a task's unfinished parents, the
claim skips tasks with ``waiting_on > 0``, and the statement trigger ``task_dependents_batch``
releases or revokes children in the statement that ends their parents (``has_dependents``),
one update per child and statement.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from ._op import Op, StoreBase, rows
from .tasks import lock_id_sql

#: Queue a batch whose tasks may depend on existing tasks (``depends_on``: their ids) and on
#: earlier tasks of the same batch (``after``: their 0-based positions), in one statement.
#: Parents in the batch get ``has_dependents`` here; existing parents get it at commit.
#: The input is :data:`pgqueue._store.tasks.QUEUE_TASKS`'s JSON document with those two
#: fields and ``run_after_failure`` added. Existing parents are read, not locked: a parent's
#: finish never waits for this transaction. At commit the deferred trigger
#: ``task_new_dependent`` (revision pgqueue_0011_callback_batch) locks them briefly, flags
#: them and counts again, so a parent that ended after this read is not waited for. When a
#: parent does not exist nothing is inserted and each row's
#: ``missing`` lists the unknown ids. A task whose parent already ended FAILURE or REVOKED
#: (directly, or through an earlier task of the batch) is inserted REVOKED with the reason,
#: unless it opted in with ``run_after_failure``. ``waiting_on`` counts the parents not ended.
QUEUE_WORKFLOW = f"""
WITH RECURSIVE input AS MATERIALIZED (
    SELECT gen_random_uuid() AS id,
           CASE WHEN i.can_overlap THEN NULL
                ELSE {lock_id_sql("i.name", "i.kwargs")} END AS lock_id,
           i.*
    FROM ROWS FROM (jsonb_to_recordset(%(tasks)s::jsonb) AS (
             name text, queue text, can_overlap boolean, priority integer, kwargs jsonb,
             meta_params jsonb, run_at timestamptz, countdown float8, expiry_at timestamptz,
             expiry_in float8, max_retries integer, limit_key text, concurrency integer,
             rate_count integer, rate_seconds float8, depends_on uuid[], after integer[],
             run_after_failure boolean))
         WITH ORDINALITY AS i(name, queue, can_overlap, priority, kwargs, meta_params, run_at,
                              countdown, expiry_at, expiry_in, max_retries, limit_key,
                              concurrency, rate_count, rate_seconds, depends_on, after,
                              run_after_failure, ord)
), parent AS MATERIALIZED (
    SELECT p.id, p.name, p.status, p.error, s.name AS state
    FROM {{s}}.task p JOIN {{s}}.state s ON s.code = p.status
    WHERE p.id IN (SELECT unnest(depends_on) FROM input)
), missing AS (
    SELECT DISTINCT x.id FROM input, unnest(input.depends_on) AS x(id)
    WHERE x.id NOT IN (SELECT id FROM parent)
), edge AS (
    SELECT i.ord, x.pos AS position, x.id AS parent, NULL::bigint AS parent_ord,
           coalesce(i.run_after_failure, false) AS run_after_failure
    FROM input i, unnest(i.depends_on) WITH ORDINALITY AS x(id, pos)
    UNION ALL
    SELECT i.ord, coalesce(cardinality(i.depends_on), 0) + x.pos, NULL, x.after + 1,
           coalesce(i.run_after_failure, false)
    FROM input i, unnest(i.after) WITH ORDINALITY AS x(after, pos)
), doom(ord, cause, root) AS (
    SELECT e.ord, format('parent %%s (%%s) ended %%s%%s', p.id, p.name, p.state, ': ' || p.error),
           format('%%s (%%s) ended %%s', p.id, p.name, p.state)
    FROM edge e JOIN parent p ON p.id = e.parent
    WHERE p.status IN (2, 3) AND NOT e.run_after_failure
  UNION
    SELECT e.ord, format('parent at position %%s of its batch was revoked: its ancestor %%s',
                         doom.ord - 1, doom.root), doom.root
    FROM doom JOIN edge e ON e.parent_ord = doom.ord
    WHERE NOT e.run_after_failure
), planned AS (  -- joins on aggregates, not a subquery per task: a group of 10,000 stays linear
    SELECT i.*, dm.cause, coalesce(w.n, 0)::integer AS waiting_on,
           pr.ord IS NOT NULL AS has_dependents
    FROM input i
    LEFT JOIN (SELECT ord, min(cause) AS cause FROM doom GROUP BY ord) dm ON dm.ord = i.ord
    LEFT JOIN (
        SELECT e.ord, count(*) AS n
        FROM edge e LEFT JOIN parent p ON p.id = e.parent
        WHERE CASE WHEN e.parent IS NOT NULL THEN p.status IN (4, 5, 6)
                   ELSE e.parent_ord NOT IN (SELECT ord FROM doom) END
        GROUP BY e.ord
    ) w ON w.ord = i.ord
    LEFT JOIN (SELECT DISTINCT parent_ord AS ord FROM edge WHERE parent_ord IS NOT NULL) pr
           ON pr.ord = i.ord
), inserted AS (
    INSERT INTO {{s}}.task AS t (id, name, queue, lock_id, priority, kwargs, meta_params,
                                 run_at, expiry, max_retries, waiting_on, status, error,
                                 time_ended, has_dependents, limit_key, concurrency,
                                 rate_count, rate_seconds)
    SELECT id, name, queue, lock_id, priority, kwargs, meta_params,
           COALESCE(run_at, now() + countdown * interval '1 second', now()),
           COALESCE(expiry_at, now() + expiry_in * interval '1 second'),
           max_retries, CASE WHEN cause IS NULL THEN waiting_on ELSE 0 END,
           CASE WHEN cause IS NULL THEN 6 ELSE 3 END, cause,
           CASE WHEN cause IS NOT NULL THEN now() END, has_dependents, limit_key, concurrency,
           rate_count, rate_seconds
    FROM planned
    WHERE NOT EXISTS (SELECT 1 FROM missing)
    ORDER BY lock_id NULLS FIRST, ord
    ON CONFLICT (lock_id) WHERE status IN (4, 5, 6) DO NOTHING
    RETURNING t.id
), linked AS (
    INSERT INTO {{s}}.task_dependency (child, parent, position, run_after_failure)
    SELECT i.id, coalesce(e.parent, pi.id), e.position, e.run_after_failure
    FROM edge e
    JOIN input i ON i.ord = e.ord
    JOIN inserted ON inserted.id = i.id
    LEFT JOIN input pi ON pi.ord = e.parent_ord
)
SELECT inserted.id::text AS id,
       ARRAY(SELECT id::text FROM missing ORDER BY id) AS missing
FROM input LEFT JOIN inserted USING (id)
ORDER BY input.ord
"""

_PARENT_COLUMNS = """p.id::text AS id, p.name, p.queue, p.status, s.name AS state, p.result,
       p.error, p.time_ended, d.position, d.run_after_failure"""

#: The parents of a task in ``depends_on`` order, with their state and result.
TASK_PARENTS = f"""
SELECT {_PARENT_COLUMNS}
FROM {{s}}.task_dependency d
JOIN {{s}}.task p ON p.id = d.parent
JOIN {{s}}.state s ON s.code = p.status
WHERE d.child = %(id)s::uuid
ORDER BY d.position
"""

#: The tasks that depend on a task, in queue order.
TASK_CHILDREN = """
SELECT c.id::text AS id, c.name, c.queue, c.status, s.name AS state, c.waiting_on
FROM {s}.task_dependency d
JOIN {s}.task c ON c.id = d.child
JOIN {s}.state s ON s.code = c.status
WHERE d.parent = %(id)s::uuid
ORDER BY c.time_queued, c.id
"""


class ParentRow(TypedDict):
    """One parent as :data:`TASK_PARENTS` reads it (``position`` 1 first)."""

    id: str
    name: str
    queue: str
    status: int
    state: str
    result: Any
    error: str | None
    time_ended: datetime | None
    position: int
    run_after_failure: bool


class ChildRow(TypedDict):
    """One child as :data:`TASK_CHILDREN` reads it."""

    id: str
    name: str
    queue: str
    status: int
    state: str
    waiting_on: int


class QueuedRow(TypedDict):
    """One input task of :data:`QUEUE_WORKFLOW`: its id (None: skipped or nothing inserted)
    and the parent ids that do not exist (the same list on every row)."""

    id: str | None
    missing: list[str]


class WorkflowOps(StoreBase):
    """Enqueue with dependencies; read parents and children (see the module docstring)."""

    def queue_workflow(self, *, tasks: str) -> Op[list[QueuedRow]]:
        """Insert a batch with dependencies from one JSON document (see
        :data:`QUEUE_WORKFLOW`): one row per task in input order."""
        return Op(self._sql(QUEUE_WORKFLOW), {"tasks": tasks}, rows)

    def task_parents(self, *, id: str) -> Op[list[ParentRow]]:
        """The parents of task ``id`` in ``depends_on`` order (see :data:`TASK_PARENTS`)."""
        return Op(self._sql(TASK_PARENTS), {"id": id}, rows)

    def task_children(self, *, id: str) -> Op[list[ChildRow]]:
        """The tasks that depend on task ``id`` (see :data:`TASK_CHILDREN`)."""
        return Op(self._sql(TASK_CHILDREN), {"id": id}, rows)

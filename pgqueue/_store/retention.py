"""Retention: delete finished tasks past an age, in small batches (``pgqueue prune``, the
worker's pruner), and count how many a prune would delete; delete the start-log rows of rate
limits whose window passed (the worker's maintenance)."""

from __future__ import annotations

from typing import Any

from ._op import Op, StoreBase, rowcount

#: Retention: delete up to ``limit`` finished tasks (``states``, a subset of SUCCESS, FAILURE,
#: REVOKED) that ended more than ``older_than`` seconds ago, oldest first, skipping rows
#: others hold. Reads the partial index task_ended; run it in a loop until it deletes
#: fewer than ``limit`` (``pgqueue prune``, and any pruner).
PRUNE_TASKS = """
DELETE FROM {s}.task t
WHERE t.id IN (
    SELECT id FROM {s}.task
    WHERE status = ANY(%(states)s::smallint[]) AND status IN (1, 2, 3)
      AND time_ended < now() - %(older_than)s::float8 * interval '1 second'
    ORDER BY time_ended
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""

#: How many tasks :data:`PRUNE_TASKS` would delete with the same parameters.
COUNT_PRUNABLE = """
SELECT count(*) AS n FROM {s}.task
WHERE status = ANY(%(states)s::smallint[]) AND status IN (1, 2, 3)
  AND time_ended < now() - %(older_than)s::float8 * interval '1 second'
"""


#: Delete up to ``limit`` rows of the rate limits' start log (``flow_start``) whose window
#: passed on the database clock, oldest first (index flow_start_reopens), skipping rows
#: others hold. A claim trims the log of each scope it admits into; this deletes the rows of
#: scopes (job and limit_key, or queue) no claim looks at again, such as a key never used
#: after. Run by every worker's maintenance at each sweep (revision pgqueue_0010_flow_turns).
PRUNE_FLOW_STARTS = """
DELETE FROM {s}.flow_start f
WHERE f.ctid = ANY(ARRAY(
    SELECT ctid FROM {s}.flow_start
    WHERE reopens_at <= now()
    ORDER BY reopens_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
"""


def _count(found: list[Any], count: int) -> int:
    return int(found[0]["n"])


class RetentionOps(StoreBase):
    """Prune finished tasks (see the module docstring)."""

    def prune_tasks(self, *, states: list[int], older_than: float, limit: int) -> Op[int]:
        """Delete up to ``limit`` tasks in ``states`` (finished ones only) that ended more
        than ``older_than`` seconds ago; the result is how many."""
        params = {"states": states, "older_than": older_than, "limit": limit}
        return Op(self._sql(PRUNE_TASKS), params, rowcount)

    def count_prunable(self, *, states: list[int], older_than: float) -> Op[int]:
        """How many tasks :meth:`prune_tasks` would delete (without a limit)."""
        params = {"states": states, "older_than": older_than}
        return Op(self._sql(COUNT_PRUNABLE), params, _count)

    def prune_flow_starts(self, *, limit: int) -> Op[int]:
        """Delete up to ``limit`` start-log rows whose rate window passed (see
        :data:`PRUNE_FLOW_STARTS`); the result is how many."""
        return Op(self._sql(PRUNE_FLOW_STARTS), {"limit": limit}, rowcount)

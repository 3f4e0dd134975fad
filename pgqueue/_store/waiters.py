"""Workers waiting for work, so that enqueues notify only when someone needs it (revision
pgqueue_0017_fewer_notifications, F32).

A worker whose claims come up short of its free slots (and that LISTENs) becomes a *waiter*:
it writes a ``queue_waiter`` row per queue (:data:`WAIT_FOR_TASKS`) and, before every claim
while it waits, tries each queue's enqueue lock in exclusive mode (:data:`SETTLE_ENQUEUES`),
before the claim takes its snapshot. The enqueue trigger
(``notify_task_queued``) notifies while a queue has a waiter; an enqueue that did not notify
holds that lock (shared) until it commits, so a worker that cannot take it knows a task may
be committed after its claim's snapshot and claims again shortly instead of sleeping.
"""

from __future__ import annotations

from typing import Any

from ._op import Op, StoreBase, nothing

#: Make ``worker`` a waiter on ``queues`` for ``lease`` seconds (database clock; 1 to 3,600),
#: and forget the rows of other workers of those queues that expired a minute ago or more
#: (their workers died): the ``SECURITY DEFINER`` function ``wait_for_tasks`` of the revision.
WAIT_FOR_TASKS = "SELECT {s}.wait_for_tasks(%(queues)s::text[], %(worker)s, %(lease)s::float8)"

#: Whether no enqueue that skipped its notification is open on any of ``queues``: the
#: exclusive enqueue lock of each queue, tried (never waited for) and held until the
#: transaction ends (at once on the claimer's autocommit connection). A claim that starts
#: after it sees every task those enqueues committed, and an enqueue that starts after it
#: sees the waiter rows written before it, so it notifies.
SETTLE_ENQUEUES = """
SELECT coalesce(bool_and(pg_try_advisory_xact_lock({s}.queue_lock_key(q, 'enqueue'))), true)
       AS settled
FROM unnest(%(queues)s::text[]) AS q
"""

#: ``worker`` waits no more: its claims fill its slots, or it stops.
STOP_WAITING = "SELECT {s}.stop_waiting(%(worker)s)"


def _settled(found: list[Any], count: int) -> bool:
    return bool(found[0]["settled"])


class WaiterOps(StoreBase):
    """The waiter rows and the enqueue locks of the workers (see the module docstring)."""

    def wait_for_tasks(self, *, queues: list[str], worker: str, lease: float) -> Op[None]:
        """Make ``worker`` a waiter on ``queues`` for ``lease`` seconds (see
        :data:`WAIT_FOR_TASKS`)."""
        params = {"queues": queues, "worker": worker, "lease": lease}
        return Op(self._sql(WAIT_FOR_TASKS), params, nothing)

    def settle_enqueues(self, *, queues: list[str]) -> Op[bool]:
        """True when no enqueue that skipped its notification is open on ``queues`` (see
        :data:`SETTLE_ENQUEUES`); takes locks held until the transaction ends."""
        return Op(self._sql(SETTLE_ENQUEUES), {"queues": queues}, _settled)

    def stop_waiting(self, *, worker: str) -> Op[None]:
        """Delete ``worker``'s waiter rows (see :data:`STOP_WAITING`)."""
        return Op(self._sql(STOP_WAITING), {"worker": worker}, nothing)

"""The client's workflow canvas: chain, group, and the dependency graph of a task."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .. import _enqueue
from .._bulk import Call, QueuedTasks, as_call
from .._errors import (
    ConfigurationError,
)
from .._store.workflows import ChildRow, ParentRow
from .._values import require_task_id
from .enqueue import EnqueueMixin, _own_kwargs, _with_callback


class WorkflowMixin(EnqueueMixin):
    """Workflows: chains, groups with a callback, and a task's parents and children."""

    # -- workflows -------------------------------------------------------------------------

    def chain(self, *calls: Call, connection: object | None = None) -> list[str]:
        """Queue ``calls`` as a chain in one statement: each step depends on the previous one
        (and on its own ``depends_on``), so they run one after the other, each only after
        the one before succeeded; a step that fails revokes the rest (see ``depends_on`` at
        :meth:`queue_task`). ``connection`` as for :meth:`queue_task`.

        :return: the id of every step, in order.
        :raises ConfigurationError: no step given, or a step (but the last) whose job cannot
            overlap; and as :meth:`queue_task`. Nothing is queued then.
        """
        return self._queue_batch(self._batch_params(_chain_items(calls)), connection).queued

    def group(
        self,
        calls: Iterable[Call | tuple[str, Mapping[str, Any]]],
        *,
        then: Call | None = None,
        connection: object | None = None,
    ) -> QueuedTasks:
        """Queue the tasks of ``calls`` (which run in parallel) and, if given, a callback
        ``then`` that runs exactly once after every one of them ended SUCCESS, in one
        statement. The callback reads their results in order with
        ``consumer.parent_results()``. A member that ends FAILURE or REVOKED makes the
        callback REVOKED, unless its job has ``run_after_failure = True`` (then it runs once
        all ended). ``connection`` as for :meth:`queue_task`.

        :return: :class:`QueuedTasks` of the members; ``then`` the callback's id.
        :raises ConfigurationError: with ``then``, a member whose job cannot overlap; and as
            :meth:`queue_many`. Nothing is queued then.
        """
        items = _with_callback(_own_kwargs(calls), then, run_anyway=False)
        return self._queue_batch(self._batch_params(items), connection, then is not None)

    def parents(self, task_id: str, *, connection: object | None = None) -> list[ParentRow]:
        """The parents of a task (the ``depends_on`` it was queued with, pruned ones gone) in
        that order: ``id``, ``name``, ``queue``, ``status``, ``state``, ``result``, ``error``,
        ``time_ended``, ``position`` (1 first) and ``run_after_failure``. Raises
        :class:`InvalidTaskId` for an id that is not a UUID."""
        op = self.store.task_parents(id=require_task_id(task_id))
        return self._fetch(op, connection)

    def children(self, task_id: str, *, connection: object | None = None) -> list[ChildRow]:
        """The tasks that depend on a task, in queue order: ``id``, ``name``, ``queue``,
        ``status``, ``state`` and ``waiting_on`` (how many of their parents have not ended)."""
        op = self.store.task_children(id=require_task_id(task_id))
        return self._fetch(op, connection)


def _chain_items(calls: Sequence[Call]) -> Iterator[_enqueue.BatchItem]:
    """The steps of a chain, each depending on the one before."""
    if not calls:
        raise ConfigurationError("chain needs at least one Call; nothing was queued")
    for position, item in enumerate(calls):
        call = as_call(item)
        link = _enqueue.Link(after=(position - 1,)) if position else None
        yield call, call.kwargs, link

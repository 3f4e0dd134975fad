"""The client's enqueue forms: one task, a batch of one job, a batch of calls."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from .. import _enqueue
from .._bulk import Call, QueuedTasks, as_call
from .._errors import (
    ConfigurationError,
    DependencyError,
)
from .._store import Op
from .._store.workflows import QueuedRow
from .core import ClientCore

logger = logging.getLogger("pgqueue.backend")


class EnqueueMixin(ClientCore):
    """Queueing tasks: one, a batch of one job, a batch of several jobs."""

    # -- queueing --------------------------------------------------------------------------

    def queue_task(
        self,
        jobname: str,
        meta_params: dict[str, Any] | None = None,
        expiry: float | timedelta | datetime | None = None,
        *,
        run_at: datetime | None = None,
        countdown: float | timedelta | str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: object | None = None,
        debounce: float | timedelta | None = None,
        depends_on: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Queue a task of job ``jobname`` with keyword arguments ``kwargs``.

        :param meta_params: extra JSON data stored with the task, not passed to the job.
        :param expiry: seconds or timedelta from now, or an aware datetime; a task not started
            by then is REVOKED. Default: the job's ``timeout``. Naive datetimes are refused.
        :param run_at: an aware datetime before which no worker claims the task.
        :param countdown: seconds (or timedelta) from now before which no worker claims it,
            or a duration string as the command line takes it (``"90s"``, ``"5m"``, ``"2h"``).
        :param queue: the queue; default the job's ``queue``, else the backend's ``name``.
        :param priority: higher runs first; default the job's ``priority``.
        :param connection: the caller's connection (psycopg ``Connection``, SQLAlchemy
            ``Session`` or ``Connection``): the task is inserted in its open transaction and
            exists only if that transaction commits; workers neither see it nor get its
            ``task_queued`` notification before then. pgqueue never commits it. Default: the
            backend's pool, committed at once.
        :param debounce: seconds (or timedelta) > 0, for a job that cannot overlap: the task
            runs ``debounce`` seconds from now, and when a QUEUED copy (same job and kwargs,
            not yet started) already waits, its run_at moves to now + ``debounce`` and its id
            is returned instead, so a burst of calls runs once, after the burst (issue 13).
            Not with ``run_at`` or ``countdown``.
        :param depends_on: ids of existing tasks (of this backend's schema) this one waits
            for: it is stored at once but no worker claims it before every one of them ended
            SUCCESS. When one ends FAILURE or REVOKED (or already has), this task ends REVOKED
            without running, its error naming that parent, and so do its own dependents;
            unless its job has ``run_after_failure = True``: then it runs once they all
            ended. The rule is enforced by the database (revision pgqueue_0007_workflows);
            the job reads its parents with ``consumer.parent_results()``.
        :param kwargs: the job's arguments, JSON data. Names of this method's own parameters
            (``jobname``, ``meta_params``, ``expiry``, ``run_at``, ``countdown``, ``queue``,
            ``priority``, ``connection``, ``debounce``, ``depends_on``) are taken as those
            parameters, never passed to the job: to give a job an argument with such a name, use
            ``queue_tasks(jobname, [kwargs])`` or a :class:`Call`. ``self`` and ``consumer``
            are refused: every job is called as ``job(consumer, **kwargs)``.
        :return: the task id, or None when the job cannot overlap and a live task (QUEUED,
            STARTED or RETRY) with the same job name and kwargs already exists, or (job
            ``unique_for``) one started less than ``unique_for`` seconds ago. A lock_id
            conflict inserts nothing and leaves the caller's transaction usable.
        :raises TaskNotAvailable: unknown job; nothing is inserted.
        :raises JobArgumentError: the kwargs do not fit the job's signature after the
            consumer (an unknown or a missing argument; jobs taking ``**kwargs`` accept any);
            a dict passed positionally is ``meta_params`` and leaves required arguments
            missing (see :mod:`pgqueue._arguments` for the rule); nothing is inserted.
        :raises SerializationError: kwargs or meta_params are not JSON; nothing is inserted.
        :raises DependencyError: a ``depends_on`` id names no task of this schema; nothing is
            inserted.
        :raises ConfigurationError: ``depends_on`` is not a list of task ids, a naive
            datetime, a negative countdown, a time that is not finite, a queue that is empty,
            holds a NUL or exceeds 48 UTF-8 bytes, a priority that is not an int of
            PostgreSQL's ``integer`` range, ``meta_params`` that is not a dict, an argument
            named ``self`` or ``consumer``, or ``connection`` is not a supported sync
            connection. A past expiry is accepted: such a task is REVOKED without running.
        """
        call = Call(jobname, kwargs, meta_params, expiry, run_at, countdown, queue, priority)
        one = self._one_task(call, kwargs, debounce, depends_on)
        if isinstance(one, _enqueue.Batch):
            return _queued_id(jobname, self._queue_batch(one, connection).ids[0])
        return _queued_id(jobname, self._fetch(one, connection))

    def _one_task(
        self,
        call: Call,
        kwargs: Mapping[str, Any],
        debounce: float | timedelta | None,
        depends_on: Iterable[str] | None,
    ) -> _enqueue.Batch | Op[str | None]:
        """What queueing one task runs, for :meth:`queue_task` and its async twin: with
        ``depends_on``, a batch of one (the workflow statement checks the parents), else the
        store's op. Raises what :meth:`queue_task` documents."""
        if depends_on is None:
            return self._queue_op(call, kwargs, debounce)
        parents = _enqueue.parent_ids(depends_on)
        if debounce is not None:
            raise ConfigurationError(
                "debounce and depends_on cannot be combined: a debounced task is found by "
                "its lock_id, a dependent by its parents; nothing was queued"
            )
        return self._batch_params([(replace(call, depends_on=parents), kwargs, None)])

    def _queue_op(
        self, call: Call, kwargs: Mapping[str, Any], debounce: float | timedelta | None
    ) -> Op[str | None]:
        """The store's op queueing ``call`` (debounced when ``debounce`` is not None)."""
        params = _enqueue.task_params(self.registry, self.name, call, kwargs)
        if debounce is None:
            return self.store.queue_task(params)
        seconds = _enqueue.check_debounce(debounce, params)
        params["countdown"] = seconds
        return self.store.queue_task_debounced(params, debounce=seconds)

    def queue_tasks(
        self,
        jobname: str,
        kwargs_list: Iterable[Mapping[str, Any]],
        *,
        meta_params: dict[str, Any] | None = None,
        expiry: float | timedelta | datetime | None = None,
        run_at: datetime | None = None,
        countdown: float | timedelta | str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: object | None = None,
        depends_on: Iterable[str] | None = None,
        then: Call | None = None,
    ) -> QueuedTasks:
        """Queue one task of job ``jobname`` per kwargs dict of ``kwargs_list``, in one
        statement (one round trip, one ``task_queued`` notification per queue).

        The other arguments apply to every task and mean what they mean for
        :meth:`queue_task`. All tasks are validated before anything is sent: one bad kwargs
        dict raises and queues none.

        :param then: a callback queued in the same statement that runs once, after every
            task of the batch ended, whatever each ended as; its job reads how many
            succeeded, failed and were revoked with ``consumer.parent_counts()`` (and each
            result with ``consumer.parent_results()``). The batch's job must then allow
            overlapping tasks (a skipped duplicate would leave the callback nothing to wait
            for).
        :return: :class:`QueuedTasks`: the id of each task in input order, None for the
            tasks skipped because their lock_id was held (``.skipped`` lists them); ``then``
            the callback's id.
        :raises TaskNotAvailable: as ``queue_task`` (for the callback's job too).
        :raises SerializationError: as ``queue_task``.
        :raises ConfigurationError: as ``queue_task``.
        :raises DependencyError: as ``queue_task``.
        """
        parents = None if depends_on is None else _enqueue.parent_ids(depends_on)
        template = Call(
            jobname, {}, meta_params, expiry, run_at, countdown, queue, priority, parents
        )
        items = _with_callback(_same_call(template, kwargs_list), then, run_anyway=True)
        return self._queue_batch(self._batch_params(items), connection, then is not None)

    def queue_many(
        self,
        calls: Iterable[Call | tuple[str, Mapping[str, Any]]],
        *,
        connection: object | None = None,
    ) -> QueuedTasks:
        """Queue tasks of several jobs in one statement: each item is a :class:`Call` or a
        ``(jobname, kwargs)`` pair. Behaves as :meth:`queue_tasks`."""
        return self._queue_batch(self._batch_params(_own_kwargs(calls)), connection)

    def _batch_params(self, calls: Iterable[_enqueue.BatchItem]) -> _enqueue.Batch:
        return _enqueue.batch_params(self.registry, self.name, calls)

    def _queue_batch(
        self, batch: _enqueue.Batch, connection: object | None, callback: bool = False
    ) -> QueuedTasks:
        op = self._batch_op(batch)
        if op is None:
            return QueuedTasks([])
        return self._batch_result(batch, self._fetch(op, connection), callback)

    def _batch_op(self, batch: _enqueue.Batch) -> Op[list[Any]] | None:
        """The store's op queueing ``batch`` (``QUEUE_WORKFLOW`` when a task of it depends on
        another, else ``QUEUE_TASKS``); None for a batch without tasks."""
        if batch.tasks is None:
            return None
        if batch.linked:
            return self.store.queue_workflow(tasks=batch.tasks)
        return self.store.queue_tasks(tasks=batch.tasks)

    def _batch_result(self, batch: _enqueue.Batch, rows: list[Any], callback: bool) -> QueuedTasks:
        """The :class:`QueuedTasks` of the rows :meth:`_batch_op`'s op returned."""
        if batch.linked:
            return self._workflow_result(rows, callback)
        return _bulk_result(rows)

    def _workflow_result(self, rows: list[QueuedRow], callback: bool) -> QueuedTasks:
        """The :class:`QueuedTasks` of ``QUEUE_WORKFLOW``'s rows (the last one the callback's
        when ``callback``); :class:`DependencyError` when a parent did not exist."""
        missing = rows[0]["missing"] if rows else []
        if missing:
            raise DependencyError(
                f"no task of schema {self.schema!r} has id {', '.join(missing)}: a task can "
                "depend only on tasks that exist in its own schema (not pruned, not of "
                "another schema); nothing was queued",
                missing,
            )
        ids = [row["id"] for row in rows]
        if callback:
            return _bulk_result(ids[:-1], ids[-1])
        return _bulk_result(ids)


def _same_call(
    template: Call, kwargs_list: Iterable[Mapping[str, Any]]
) -> Iterator[_enqueue.BatchItem]:
    """``(template, kwargs)`` for each kwargs dict of ``kwargs_list``. Raises
    :class:`ConfigurationError` when ``kwargs_list`` is a single dict or a str (a common slip
    for a list of dicts)."""
    if isinstance(kwargs_list, Mapping | str | bytes):
        raise ConfigurationError(
            f"kwargs_list must be a list of kwargs dicts, not a {type(kwargs_list).__name__}; "
            "for one task pass [kwargs]; nothing was queued"
        )
    return ((template, kwargs, None) for kwargs in kwargs_list)


def _own_kwargs(
    calls: Iterable[Call | tuple[str, Mapping[str, Any]]],
) -> Iterator[_enqueue.BatchItem]:
    """``(call, call.kwargs, None)`` for each item of a mixed batch (see
    :func:`bulk.as_call`)."""
    if isinstance(calls, Call | str | bytes):
        raise ConfigurationError(
            f"calls must be a list of Call, not one {type(calls).__name__}; nothing was queued"
        )
    for item in calls:
        call = as_call(item)
        yield call, call.kwargs, None


def _with_callback(
    items: Iterable[_enqueue.BatchItem], then: Call | None, *, run_anyway: bool
) -> Iterator[_enqueue.BatchItem]:
    """``items``, then the callback ``then`` depending on every one of them (run whatever
    they ended as when ``run_anyway``, else as its job says)."""
    yield from items
    if then is not None:
        callback = as_call(then)
        link = _enqueue.Link(after_all=True, run_after_failure=run_anyway)
        yield callback, callback.kwargs, link


def _queued_id(jobname: str, task_id: str | None) -> str | None:
    if task_id is None:
        logger.debug("%s cannot queue new task: a live task holds its lock_id", jobname)
    return task_id


def _bulk_result(ids: list[str | None], then: str | None = None) -> QueuedTasks:
    """The ids ``QUEUE_TASKS`` returned, one per task in input order (and a callback's)."""
    result = QueuedTasks(ids, then)
    if result.skipped:
        logger.debug("bulk enqueue skipped %d tasks whose lock_id was held", len(result.skipped))
    return result

"""The :class:`TaskBackend`: queue tasks, read them, wait for them (pulsar's ``TaskBackend``).

Connections: a backend keeps one small pool (``pool_size`` connections, default 2, opened on
first use) for its queries, plus one listener connection, opened by the first
:meth:`TaskBackend.wait_for_task` or :meth:`TaskBackend.await_task`. The ``a``-prefixed
(asyncio) methods use a second pool of at most ``pool_size`` connections on psycopg's async
driver, opened on first use (:mod:`pgqueue.aio`). Methods given ``connection=`` use the
caller's connection, in the caller's transaction, and none of the backend's (transactional
enqueue, :mod:`pgqueue._connections`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from . import _channels, _connections, _db, _enqueue, _replica, states
from ._store import Op, Store
from ._store.workflows import ChildRow, ParentRow, QueuedRow
from ._values import check_queue, check_text, require_task_id
from .aio import LoopPool
from .bulk import Call, QueuedTasks, as_call
from .errors import (
    ConfigurationError,
    ConnectionFailed,
    DependencyError,
    SchemaError,
    TaskNotFound,
    TaskTimeout,
    UnknownQueue,
)
from .jobs import JobOptions, JobRegistry, check_flow_options
from .listener import Listener, listen_target
from .states import RevokeResult
from .task import Task

logger = logging.getLogger("pgqueue.backend")

#: What ``job_list`` shows of a periodic job's stored schedule.
_SCHEDULE_INFO = ("run_every", "cron", "runs_count", "last_tick", "next_tick")

#: Seconds between re-reads of a task while waiting for it, whatever the notifications say.
WAIT_RECHECK = 5.0
#: Seconds between re-reads of a waited-for task when no listener can run (poll-only).
POLL_RECHECK = 0.5

Connection = psycopg.Connection[dict[str, Any]]

R = TypeVar("R")


class TaskBackend:
    """Client of one pgqueue database (pulsar's ``TaskBackend``).

    :param dsn: libpq URL or key=value string; None reads ``$PGQUEUE_DSN``.
    :param task_paths: modules whose jobs this backend may queue (``["myapp.jobs"]``).
    :param name: the default queue (pulsar's backend name), default ``"tasks"``.
    :param registry: a ready :class:`JobRegistry`, instead of or besides ``task_paths``.
    :param schema: the PostgreSQL schema of pgqueue's tables (default ``pgqueue``).
    :param pool_size: the most connections the backend's pool opens (default 2).
    :param listen_dsn: where :meth:`wait_for_task` LISTENs, straight to PostgreSQL, when
        ``dsn`` goes through a transaction pooler; None reads ``$PGQUEUE_LISTEN_DSN``, and
        without one the backend LISTENs through ``dsn`` or, behind a transaction pooler, polls
        (found out by a probe: :func:`pgqueue.listener.listen_target`).

    Raises :class:`pgqueue.errors.ConfigurationError` for a missing or malformed DSN. Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        dsn: str | None = None,
        task_paths: Sequence[str] = (),
        name: str = "tasks",
        *,
        registry: JobRegistry | None = None,
        schema: str | None = None,
        pool_size: int = 2,
        listen_dsn: str | None = None,
    ) -> None:
        self.dsn = _db.resolve_dsn(dsn)
        self.listen_dsn = _db.resolve_listen_dsn(listen_dsn)
        self.name = name
        self.task_paths = list(task_paths)
        self.schema = _db.resolve_schema(schema)
        self.store = Store(self.schema)
        self.pool_size = pool_size
        self._registry = registry
        self._pool: ConnectionPool[Connection] | None = None
        self._pool_lock = threading.Lock()
        self._listener: Listener | None = None
        self._poll_only = False
        self._apool = LoopPool(self.dsn, pool_size, "pgqueue-client-async")
        #: task id -> callbacks that wake the sync and async waiters of that task
        self._waiters: dict[str, list[Callable[[], None]]] = {}
        self._waiters_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<TaskBackend {self.name} {_db.redact(self.dsn)}>"

    # -- jobs ------------------------------------------------------------------------------

    @property
    def registry(self) -> JobRegistry:
        """The :class:`JobRegistry` loaded from ``task_paths`` (on first use)."""
        if self._registry is None:
            self._registry = JobRegistry.load(self.task_paths)
        return self._registry

    def channel(self, event: str, queue: str | None = None) -> str:
        """The NOTIFY channel of ``event`` (``task_queued``, ``task_started``, ``task_done``)
        for ``queue`` (default this backend's name): ``"<queue>_<event>"``, as in pulsar."""
        return _channels.channel(queue or self.name, event)

    def event_name(self, channel: str, queue: str | None = None) -> str:
        """The event of a NOTIFY ``channel`` of ``queue`` (default this backend's name): the
        inverse of :meth:`channel`, as pulsar's ``event_name``. Raises
        :class:`ConfigurationError` for a channel of another queue."""
        prefix = f"{queue or self.name}_"
        if not channel.startswith(prefix):
            raise ConfigurationError(f"channel {channel!r} is not one of queue {prefix[:-1]!r}")
        return channel[len(prefix) :]

    def job_list(self, jobnames: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``[(name, info), ...]`` for the registered jobs (all, or those named), as in pulsar.

        ``info`` holds ``doc``, ``type`` (``"regular"`` or ``"periodic"``), ``can_overlap`` (a
        bool, or ``"maybe"`` when it depends on the kwargs), ``timeout`` (seconds or None),
        ``queue`` and ``priority``. A periodic job's also holds, from its stored schedule (None
        until a scheduler has defined it): ``next_run`` (seconds until its next tick, 0 when
        due), ``run_every`` (seconds; None for cron), ``cron``, ``runs_count``, ``last_tick``
        and ``next_tick``.
        """
        registry = self.registry
        out = []
        for name in jobnames or registry:
            job = registry.get(name)
            if job is None:
                continue
            overlap = job.can_overlap
            out.append(
                (
                    name,
                    {
                        "doc": job.doc,
                        "type": job.type,
                        "can_overlap": "maybe" if callable(overlap) else bool(overlap),
                        "timeout": job.expiry_seconds(),
                        "queue": job.queue or self.name,
                        "priority": job.priority,
                    },
                )
            )
        infos = dict(out)
        periodic = [name for name, info in out if info["type"] == "periodic"]
        stored = {row["name"]: row for row in self.schedules(periodic)} if periodic else {}
        for name in periodic:
            row = stored.get(name, {})
            infos[name].update({key: row.get(key) for key in _SCHEDULE_INFO})
            infos[name]["next_run"] = max(row["due_in"], 0.0) if row else None
        return out

    def schedules(self, jobnames: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The stored schedules of periodic jobs (all, or those named), by name.

        Each row is the ``schedule_state`` view's (``name``, ``schedule``, ``missed``,
        ``last_tick``, ``next_tick``, ``runs_count``, ``skipped_count``, ``last_outcome``,
        ``last_task``, ``last_task_state``) with ``due_in`` as seconds until ``next_tick`` by
        the database clock (negative: due), plus ``run_every`` (seconds; None for cron),
        ``cron`` and ``timezone``. A schedule exists once a scheduler has defined it.
        """
        names = None if jobnames is None else list(jobnames)
        with self.connection() as conn:
            return self.store.list_schedules(names=names).run(conn)

    def next_scheduled(
        self, jobnames: Iterable[str] | None = None
    ) -> tuple[str | list[str] | None, float | None]:
        """``(name, seconds)``: the periodic job (of those named, else of all registered) whose
        next tick comes first, and the seconds until it (0 when due) by the database clock, as
        pulsar's ``next_scheduled``. ``(jobnames, None)`` when none has a stored schedule."""
        wanted = list(jobnames) if jobnames else None
        names = wanted or [name for name, _ in self.registry.filter_types("periodic")]
        rows = self.schedules(names) if names else []
        if not rows:
            return wanted, None
        first = min(rows, key=lambda row: row["due_in"])
        return first["name"], max(first["due_in"], 0.0)

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
        parents = None if depends_on is None else _enqueue.parent_ids(depends_on)
        call = Call(
            jobname, kwargs, meta_params, expiry, run_at, countdown, queue, priority, parents
        )
        if depends_on is not None:
            if debounce is not None:
                raise ConfigurationError(
                    "debounce and depends_on cannot be combined: a debounced task is found by "
                    "its lock_id, a dependent by its parents; nothing was queued"
                )
            batch = self._queue_batch(self._batch_params([(call, kwargs, None)]), connection)
            return _queued_id(jobname, batch.ids[0])
        return _queued_id(jobname, self._fetch(self._queue_op(call, kwargs, debounce), connection))

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

    def _batch_params(self, calls: Iterable[_enqueue.BatchItem]) -> _enqueue.Batch:
        return _enqueue.batch_params(self.registry, self.name, calls)

    def _queue_batch(
        self, batch: _enqueue.Batch, connection: object | None, callback: bool = False
    ) -> QueuedTasks:
        if batch.tasks is None:
            return QueuedTasks([])
        if not batch.linked:
            return _bulk_result(self._fetch(self.store.queue_tasks(tasks=batch.tasks), connection))
        op = self.store.queue_workflow(tasks=batch.tasks)
        return self._workflow_result(self._fetch(op, connection), callback)

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

    def parents(self, task_id: str, *, connection: object | None = None) -> list[ParentRow]:
        """The parents of a task (the ``depends_on`` it was queued with, pruned ones gone) in
        that order: ``id``, ``name``, ``queue``, ``status``, ``state``, ``result``, ``error``,
        ``time_ended``, ``position`` (1 first) and ``run_after_failure``. Raises
        :class:`InvalidTaskId` for an id that is not a UUID."""
        op = self.store.task_parents(id=require_task_id(task_id))
        return self._fetch(op, connection)

    def children(self, task_id: str, *, connection: object | None = None) -> list[ChildRow]:
        """The tasks that depend on a task, in queue order: ``id``, ``name``, ``queue``, ``status``,
        ``state`` and ``waiting_on`` (how many of their parents have not ended)."""
        op = self.store.task_children(id=require_task_id(task_id))
        return self._fetch(op, connection)

    # -- reading ---------------------------------------------------------------------------

    def get_task(self, task_id: str, *, connection: object | None = None) -> Task | None:
        """The task with this id, or None when no task has it. ``connection`` as for
        :meth:`get_tasks`. Raises :class:`InvalidTaskId` for an id that is not a UUID."""
        tasks = self.get_tasks([task_id], connection=connection)
        return tasks[0] if tasks else None

    def get_tasks(self, ids: Iterable[str], *, connection: object | None = None) -> list[Task]:
        """The tasks with these ids that exist, in no particular order. Raises
        :class:`InvalidTaskId` (nothing is read) when one of the ids is not a UUID.

        :param connection: read through the caller's connection (which sees its own
            uncommitted tasks) instead of the backend's pool.
        """
        valid = _valid_ids(ids)
        if not valid:
            return []
        return self._fetch(self.store.get_tasks(ids=valid), connection)

    def wait_for_task(self, task_id: str, timeout: float | None = None) -> Task:
        """Block until the task is in a ready state (SUCCESS, FAILURE, REVOKED); return it.

        Listens on ``<queue>_task_done`` and re-reads the row after every notification, after
        every reconnect of the listener and at least every few seconds, so a lost notification
        can never keep it waiting once the task has ended.

        :param timeout: seconds; None waits for ever; 0 or less only reads the task once.
        :raises TaskTimeout: the task was not ready within ``timeout``.
        :raises ConfigurationError: ``timeout`` is not a number (or is NaN).
        :raises TaskNotFound: no task has this id, or it was deleted (flushed, pruned) while
            waiting (noticed at the next re-read, within a few seconds); its subclass
            :class:`InvalidTaskId` when ``task_id`` is not a UUID.
        :raises ConnectionFailed: a re-read found no connection to the database within 10 s
            (an outage longer than that; a restart or a terminated backend is ridden out).
        """
        deadline = _deadline(timeout)
        task = self._require_task(task_id)
        if task.done():
            return task
        event = threading.Event()
        self._add_waiter(task.id, event.set)
        try:
            listener = self._ensure_listener()
            if listener is not None:
                listener.listen([self.channel(_channels.TASK_DONE, task.queue)], timeout)
            while True:
                task = self._require_task(task.id)
                if task.done():
                    return task
                event.wait(_wait_slice(task, deadline, timeout, self._recheck))
                event.clear()
        finally:
            self._remove_waiter(task.id, event.set)

    def _require_task(self, task_id: str) -> Task:
        task = self.get_task(task_id)
        if task is None:
            raise TaskNotFound(f"no task has id {task_id!r}")
        return task

    @property
    def _recheck(self) -> float:
        """Seconds between re-reads of a waited-for task."""
        return POLL_RECHECK if self._poll_only else WAIT_RECHECK

    def _ensure_listener(self) -> Listener | None:
        """The backend's listener, started on first use; None when it runs poll-only."""
        with self._pool_lock:
            if self._listener is None and not self._poll_only:
                target = listen_target(self.dsn, self.listen_dsn, "client")
                if target is None:
                    self._poll_only = True
                    return None
                self._listener = Listener(
                    target,
                    [],
                    on_notify=self._on_notify,
                    on_reconnect=self._wake_all_waiters,
                    application_name="pgqueue-client-listener",
                )
                self._listener.start()
            return self._listener

    def _add_waiter(self, task_id: str, wake: Callable[[], None]) -> None:
        with self._waiters_lock:
            self._waiters.setdefault(task_id, []).append(wake)

    def _remove_waiter(self, task_id: str, wake: Callable[[], None]) -> None:
        with self._waiters_lock:
            wakers = self._waiters.get(task_id, [])
            if wake in wakers:
                wakers.remove(wake)
            if not wakers:
                self._waiters.pop(task_id, None)

    def _on_notify(self, channel: str, payload: str) -> None:
        with self._waiters_lock:
            wakers = list(self._waiters.get(payload, ()))
        for wake in wakers:
            wake()

    def _wake_all_waiters(self) -> None:
        with self._waiters_lock:
            wakers = [wake for group in self._waiters.values() for wake in group]
        for wake in wakers:
            wake()

    # -- asyncio ---------------------------------------------------------------------------

    async def aqueue_task(
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
        """Awaitable :meth:`queue_task`: the same statement and rules on the async pool, or
        on the caller's psycopg ``AsyncConnection`` or SQLAlchemy ``AsyncSession`` /
        ``AsyncConnection`` given as ``connection`` (in its transaction, never committed)."""
        parents = None if depends_on is None else _enqueue.parent_ids(depends_on)
        call = Call(
            jobname, kwargs, meta_params, expiry, run_at, countdown, queue, priority, parents
        )
        if depends_on is not None:
            if debounce is not None:
                raise ConfigurationError(
                    "debounce and depends_on cannot be combined: a debounced task is found by "
                    "its lock_id, a dependent by its parents; nothing was queued"
                )
            items = [(call, kwargs, None)]
            batch = await self._aqueue_batch(self._batch_params(items), connection)
            return _queued_id(jobname, batch.ids[0])
        op = self._queue_op(call, kwargs, debounce)
        return _queued_id(jobname, await self._afetch(op, connection))

    async def aqueue_tasks(
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
        """Awaitable :meth:`queue_tasks` (see :meth:`aqueue_task` for ``connection``)."""
        parents = None if depends_on is None else _enqueue.parent_ids(depends_on)
        template = Call(
            jobname, {}, meta_params, expiry, run_at, countdown, queue, priority, parents
        )
        items = _with_callback(_same_call(template, kwargs_list), then, run_anyway=True)
        return await self._aqueue_batch(self._batch_params(items), connection, then is not None)

    async def aqueue_many(
        self,
        calls: Iterable[Call | tuple[str, Mapping[str, Any]]],
        *,
        connection: object | None = None,
    ) -> QueuedTasks:
        """Awaitable :meth:`queue_many` (see :meth:`aqueue_task` for ``connection``)."""
        return await self._aqueue_batch(self._batch_params(_own_kwargs(calls)), connection)

    async def achain(self, *calls: Call, connection: object | None = None) -> list[str]:
        """Awaitable :meth:`chain` (see :meth:`aqueue_task` for ``connection``)."""
        batch = self._batch_params(_chain_items(calls))
        return (await self._aqueue_batch(batch, connection)).queued

    async def agroup(
        self,
        calls: Iterable[Call | tuple[str, Mapping[str, Any]]],
        *,
        then: Call | None = None,
        connection: object | None = None,
    ) -> QueuedTasks:
        """Awaitable :meth:`group` (see :meth:`aqueue_task` for ``connection``)."""
        items = _with_callback(_own_kwargs(calls), then, run_anyway=False)
        return await self._aqueue_batch(self._batch_params(items), connection, then is not None)

    async def _aqueue_batch(
        self, batch: _enqueue.Batch, connection: object | None, callback: bool = False
    ) -> QueuedTasks:
        if batch.tasks is None:
            return QueuedTasks([])
        if not batch.linked:
            op = self.store.queue_tasks(tasks=batch.tasks)
            return _bulk_result(await self._afetch(op, connection))
        rows = await self._afetch(self.store.queue_workflow(tasks=batch.tasks), connection)
        return self._workflow_result(rows, callback)

    async def aget_task(self, task_id: str, *, connection: object | None = None) -> Task | None:
        """Awaitable :meth:`get_task`."""
        tasks = await self.aget_tasks([task_id], connection=connection)
        return tasks[0] if tasks else None

    async def aget_tasks(
        self, ids: Iterable[str], *, connection: object | None = None
    ) -> list[Task]:
        """Awaitable :meth:`get_tasks`."""
        valid = _valid_ids(ids)
        if not valid:
            return []
        return await self._afetch(self.store.get_tasks(ids=valid), connection)

    async def await_task(self, task_id: str, timeout: float | None = None) -> Task:
        """Awaitable :meth:`wait_for_task`: wait without blocking the event loop until the
        task is ready; return it.

        Notifications arrive through the backend's listener thread (the same one
        :meth:`wait_for_task` uses) and wake the waiting coroutine; rows are re-read on the
        async pool, at least every few seconds.

        :raises TaskTimeout: the task was not ready within ``timeout`` seconds.
        :raises TaskNotFound: no task has this id.
        """
        deadline = _deadline(timeout)
        task = await self._arequire_task(task_id)
        if task.done():
            return task
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

        self._add_waiter(task.id, wake)
        try:
            listener = await asyncio.to_thread(self._ensure_listener)
            channels = [self.channel(_channels.TASK_DONE, task.queue)]
            if listener is not None:
                await asyncio.to_thread(listener.listen, channels, WAIT_RECHECK)
            while True:
                task = await self._arequire_task(task.id)
                if task.done():
                    return task
                pause = _wait_slice(task, deadline, timeout, self._recheck)
                with suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), pause)
                event.clear()
        finally:
            self._remove_waiter(task.id, wake)

    async def _arequire_task(self, task_id: str) -> Task:
        task = await self.aget_task(task_id)
        if task is None:
            raise TaskNotFound(f"no task has id {task_id!r}")
        return task

    async def _afetch(self, op: Op[R], connection: object | None) -> R:
        """Run ``op`` on the caller's async ``connection``, else on the async pool."""
        if connection is not None:
            return await _connections.arun(connection, op)
        try:
            async with self._apool.connection() as conn:
                return await _connections.arun(conn, op)
        except psycopg.Error as exc:
            raise _translated(self.dsn, self.schema, exc) from None

    async def aclose(self) -> None:
        """Close the async pool, then what :meth:`close` closes. Call it at the end of the
        event loop that used the ``a``-prefixed methods (e.g. a FastAPI lifespan)."""
        await self._apool.close()
        await asyncio.to_thread(self.close)

    # -- maintenance -----------------------------------------------------------------------

    def flush(self) -> int:
        """Delete every task of this backend's queue that has not started (QUEUED or RETRY),
        as pulsar's ``flush``; return how many were deleted."""
        with self.connection() as conn:
            return self.store.flush_queue(queue=self.name).run(conn)

    def revoke(self, task_id: str, reason: str = "revoked") -> RevokeResult:
        """Cancel a task. A QUEUED or RETRY task becomes REVOKED at once (``error`` =
        ``reason``), releasing its lock_id. A STARTED task is marked (``revoke_requested_at``)
        and its worker is told through NOTIFY (and its next heartbeat): ``consumer.is_revoked()``
        turns True, an ``async`` job is cancelled, and the task ends REVOKED if the job stops
        (for thread jobs this is cooperative); a job that returns normally all the same ends
        SUCCESS with its result.

        :return: a :class:`pgqueue.states.RevokeResult` saying what happened: ``REVOKED``
            (it had not started and never will), ``STOP_REQUESTED`` (it was running and was
            asked to stop) or ``ALREADY_DONE`` (it had finished; falsy, the first two truthy).
        :raises TaskNotFound: no task has this id.
        :raises InvalidTaskId: ``task_id`` is not a UUID.
        :raises ConfigurationError: ``reason`` is not a str, or holds a NUL character.
        """
        valid = require_task_id(task_id)
        check_text(reason, "reason")
        with self.connection() as conn:
            row = self.store.revoke_task(id=valid, reason=reason).run(conn)
        if row is not None:
            if row["status"] == states.STARTED:
                return RevokeResult.STOP_REQUESTED
            return RevokeResult.REVOKED
        if self.get_task(task_id) is None:
            raise TaskNotFound(f"no task has id {task_id!r}")
        return RevokeResult.ALREADY_DONE

    # -- flow control ----------------------------------------------------------------------

    def pause_queue(self, name: str) -> datetime:
        """Pause queue ``name`` for every worker: from their next claim none takes a task from
        it (the claim itself skips paused queues, so it holds fleet-wide and across restarts);
        running tasks finish, queued ones wait. Pausing a paused queue changes nothing. The
        SQL equivalent is ``SELECT pgqueue.pause_queue('name')`` (revision pgqueue_0006_flow).

        :return: since when the queue is paused (database clock).
        :raises UnknownQueue: no task and no worker ever used ``name`` (nothing changed).
        :raises ConfigurationError: ``name`` is not a valid queue name.
        """
        return self._flow_call(self.store.pause_queue(queue=check_queue(name)), name)

    def resume_queue(self, name: str) -> bool:
        """Resume queue ``name``: its workers are woken by a notification and claim at once.

        :return: whether the queue was paused.
        :raises UnknownQueue: no task and no worker ever used ``name`` (nothing changed).
        :raises ConfigurationError: ``name`` is not a valid queue name.
        """
        return self._flow_call(self.store.resume_queue(queue=check_queue(name)), name)

    def set_queue_limit(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate: tuple[int, float] | None = None,
    ) -> None:
        """Set the limits of ``queue``, across all workers and enforced by every claim (as a
        job's ``concurrency`` and ``rate_limit`` are): at most ``concurrency`` tasks STARTED
        at once, at most ``rate[0]`` starts in any window of ``rate[1]`` seconds (database
        clock). None means no such limit: each call sets both. Stored in ``queue_setting``,
        changeable at run time (SQL: ``SELECT pgqueue.set_queue_limit('queue', 4, 10, 1.0)``);
        workers are woken to apply it.

        :raises ConfigurationError: ``concurrency`` is not None nor an int >= 1, ``rate`` not
            None nor (int >= 1, seconds > 0), or ``queue`` not a valid name (nothing changed).
        :raises UnknownQueue: no task and no worker ever used ``queue`` (nothing changed).
        """
        check_flow_options(JobOptions(concurrency=concurrency, rate_limit=rate), f"queue {queue!r}")
        op = self.store.set_queue_limit(
            queue=check_queue(queue),
            concurrency=concurrency,
            rate_count=rate[0] if rate else None,
            rate_seconds=float(rate[1]) if rate else None,
        )
        self._flow_call(op, queue)

    def _flow_call(self, op: Op[R], name: str) -> R:
        with self.connection() as conn:
            try:
                return op.run(conn)
            except psycopg.errors.NoDataFound:
                raise UnknownQueue(
                    f"unknown queue {name!r}: no task and no worker ever used it; check the "
                    "name (pgqueue status lists the queues). Nothing was changed."
                ) from None

    # -- connections -----------------------------------------------------------------------

    def _fetch(self, op: Op[R], connection: object | None) -> R:
        """Run ``op`` on the caller's ``connection``, else on the backend's pool."""
        if connection is not None:
            return _connections.run(connection, op)
        with self.connection() as conn:
            return _connections.run(conn, op)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled autocommit connection; errors become :class:`ConnectionFailed` or
        :class:`SchemaError` with a message saying what to do."""
        pool = self._open_pool()
        try:
            with pool.connection(timeout=10) as conn:
                yield conn
        except PoolTimeout:
            _db.connect(self.dsn).close()  # raises ConnectionFailed saying why, if it can't
            raise ConnectionFailed(
                f"no free connection in the pool of {self} after 10s (pool_size={self.pool_size})"
            ) from None
        except psycopg.Error as exc:
            raise _translated(self.dsn, self.schema, exc) from None

    def _open_pool(self) -> ConnectionPool[Connection]:
        with self._pool_lock:
            if self._pool is None:
                _db.connect(self.dsn, application_name="pgqueue-client").close()
                self._pool = ConnectionPool(
                    _db.conninfo(self.dsn, "pgqueue-client"),
                    min_size=1,
                    max_size=max(self.pool_size, 1),
                    kwargs={
                        "autocommit": True,
                        "row_factory": dict_row,
                        **_db.connection_options(self.dsn),
                    },
                    configure=_db.configure,
                    check=_db.check_pooled,
                    open=True,
                    name="pgqueue-client",
                )
            return self._pool

    def close(self) -> None:
        """Close the pools and the listener. The backend may be used again afterwards.

        From async code prefer ``await aclose()``; this closes the async pool too, on its
        event loop, waiting at most a few seconds.
        """
        self._apool.close_from_sync()
        with self._pool_lock:
            pool, self._pool = self._pool, None
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        if pool is not None:
            pool.close()

    def __enter__(self) -> TaskBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _translated(dsn: str, schema: str, exc: psycopg.Error) -> Exception:
    """The error to raise for a driver error on one of the backend's own connections: a
    :class:`SchemaError` for missing tables, :class:`ConnectionFailed` for a lost or refused
    connection, else ``exc`` itself (a deadlock or a statement timeout is the database's
    own answer). A write refused as read-only becomes a :class:`ConfigurationError` naming the
    fix (the primary's DSN)."""
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
        return SchemaError(
            f"pgqueue's tables are missing ({exc.diag.message_primary}): run "
            f"`{_db.migrate_command(dsn, schema)}`"
        )
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return ConfigurationError(
            _replica.read_only_message(dsn, "a read-only server (a standby, or read-only session)")
        )
    if isinstance(exc, psycopg.OperationalError) and _db.is_connection_error(exc):
        return ConnectionFailed(_db.connection_error_message(dsn, exc))
    return exc


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


def _chain_items(calls: Sequence[Call]) -> Iterator[_enqueue.BatchItem]:
    """The steps of a chain, each depending on the one before."""
    if not calls:
        raise ConfigurationError("chain needs at least one Call; nothing was queued")
    for position, item in enumerate(calls):
        call = as_call(item)
        link = _enqueue.Link(after=(position - 1,)) if position else None
        yield call, call.kwargs, link


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


def _valid_ids(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, str | bytes):
        raise ConfigurationError(
            f"ids must be an iterable of task ids, not one {type(ids).__name__}: "
            "pass [task_id], or call get_task"
        )
    return [require_task_id(i) for i in ids]


def _deadline(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` value at which a wait of ``timeout`` seconds ends (None: no
    end); raises :class:`ConfigurationError` for a timeout that is not a number or is NaN."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout != timeout:
        raise ConfigurationError(f"timeout must be seconds or None, not {timeout!r}")
    return time.monotonic() + timeout


def _wait_slice(task: Task, deadline: float | None, timeout: float | None, recheck: float) -> float:
    """Seconds (at most ``recheck``) a waiter may sleep before re-reading ``task``; raises
    :class:`TaskTimeout` once ``deadline`` (a ``time.monotonic()`` value) has passed."""
    if deadline is None:
        return recheck
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TaskTimeout(
            f"task {task.id} ({task.name}) is still {task.status_string()} after {timeout}s"
        )
    return min(remaining, recheck)

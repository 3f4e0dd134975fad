"""The :class:`TaskBackend`: queue tasks, read them, wait for them (pulsar's ``TaskBackend``).

Connections: a backend keeps one small pool (``pool_size`` connections, default 2, opened on
first use) for its queries, plus one listener connection, opened by the first
:meth:`TaskBackend.wait_for_task`. Nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from . import _db
from ._sql import Statements
from ._values import dump_json, dump_kwargs, parse_task_id, time_params
from .errors import ConfigurationError, ConnectionFailed, SchemaError, TaskNotFound, TaskTimeout
from .jobs import JobRegistry
from .listener import Listener
from .task import Task

logger = logging.getLogger("pgqueue.backend")

#: Seconds between re-reads of a task while waiting for it, whatever the notifications say.
WAIT_RECHECK = 5.0

Connection = psycopg.Connection[dict[str, Any]]


class TaskBackend:
    """Client of one pgqueue database (pulsar's ``TaskBackend``).

    :param dsn: libpq URL or key=value string; None reads ``$PGQUEUE_DSN``.
    :param task_paths: modules whose jobs this backend may queue (``["myapp.jobs"]``).
    :param name: the default queue (pulsar's backend name), default ``"tasks"``.
    :param registry: a ready :class:`JobRegistry`, instead of or besides ``task_paths``.
    :param schema: the PostgreSQL schema of pgqueue's tables (default ``pgqueue``).
    :param pool_size: the most connections the backend's pool opens (default 2).

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
    ) -> None:
        self.dsn = _db.resolve_dsn(dsn)
        self.name = name
        self.task_paths = list(task_paths)
        self.schema = _db.resolve_schema(schema)
        self.sql = Statements(self.schema)
        self.pool_size = pool_size
        self._registry = registry
        self._pool: ConnectionPool[Connection] | None = None
        self._pool_lock = threading.Lock()
        self._listener: Listener | None = None
        self._waiters: dict[str, threading.Event] = {}
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
        return f"{queue or self.name}_{event}"

    def job_list(self, jobnames: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``[(name, info), ...]`` for the registered jobs (all, or those named), as in pulsar.

        ``info`` holds ``doc``, ``type`` (``"regular"``), ``can_overlap`` (a bool, or
        ``"maybe"`` when it depends on the kwargs), ``timeout`` (seconds or None), ``queue``
        and ``priority``.
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
                        "type": "regular",
                        "can_overlap": "maybe" if callable(overlap) else bool(overlap),
                        "timeout": job.expiry_seconds(),
                        "queue": job.queue or self.name,
                        "priority": job.priority,
                    },
                )
            )
        return out

    # -- queueing --------------------------------------------------------------------------

    def queue_task(
        self,
        jobname: str,
        meta_params: dict[str, Any] | None = None,
        expiry: float | timedelta | datetime | None = None,
        *,
        run_at: datetime | None = None,
        countdown: float | timedelta | None = None,
        queue: str | None = None,
        priority: int | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Queue a task of job ``jobname`` with keyword arguments ``kwargs``.

        :param meta_params: extra JSON data stored with the task, not passed to the job.
        :param expiry: seconds or timedelta from now, or an aware datetime; a task not started
            by then is REVOKED. Default: the job's ``timeout``. Naive datetimes are refused.
        :param run_at: an aware datetime before which no worker claims the task.
        :param countdown: seconds (or timedelta) from now before which no worker claims it.
        :param queue: the queue; default the job's ``queue``, else the backend's ``name``.
        :param priority: higher runs first; default the job's ``priority``.
        :return: the task id, or None when the job cannot overlap and a live task (QUEUED,
            STARTED or RETRY) with the same job name and kwargs already exists.
        :raises TaskNotAvailable: unknown job; nothing is inserted.
        :raises SerializationError: kwargs or meta_params are not JSON; nothing is inserted.
        :raises ConfigurationError: a naive datetime or a negative time.
        """
        params = self._queue_params(
            jobname, meta_params, expiry, run_at, countdown, queue, priority, kwargs
        )
        with self.connection() as conn:
            row = conn.execute(self.sql.queue_task, params).fetchone()
        if row is None:
            logger.debug("%s cannot queue new task: a live task holds its lock_id", jobname)
            return None
        return str(row["id"])

    def _queue_params(
        self,
        jobname: str,
        meta_params: dict[str, Any] | None,
        expiry: float | timedelta | datetime | None,
        run_at: datetime | None,
        countdown: float | timedelta | None,
        queue: str | None,
        priority: int | None,
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        job = self.registry[jobname]
        expiry_at, expiry_in = time_params(
            expiry if expiry is not None else job.expiry_seconds(), "expiry"
        )
        if run_at is not None and countdown is not None:
            raise ConfigurationError("give run_at or countdown, not both")
        start_at, start_in = time_params(run_at if run_at is not None else countdown, "run_at")
        return {
            "name": job.name,
            "queue": queue or job.queue or self.name,
            "can_overlap": job.overlaps(kwargs),
            "priority": job.priority if priority is None else int(priority),
            "kwargs": dump_kwargs(job.name, kwargs),
            "meta_params": dump_json(meta_params or {}, "meta_params"),
            "run_at": start_at,
            "countdown": start_in,
            "expiry_at": expiry_at,
            "expiry_in": expiry_in,
            "max_retries": int(job.max_retries),
        }

    # -- reading ---------------------------------------------------------------------------

    def get_task(self, task_id: str) -> Task | None:
        """The task with this id, or None (also for a malformed id)."""
        tasks = self.get_tasks([task_id])
        return tasks[0] if tasks else None

    def get_tasks(self, ids: Iterable[str]) -> list[Task]:
        """The tasks with these ids that exist, in no particular order."""
        valid = [tid for tid in (parse_task_id(i) for i in ids) if tid]
        if not valid:
            return []
        with self.connection() as conn:
            rows = conn.execute(self.sql.get_tasks, {"ids": valid}).fetchall()
        return [Task.from_row(row) for row in rows]

    def wait_for_task(self, task_id: str, timeout: float | None = None) -> Task:
        """Block until the task is in a ready state (SUCCESS, FAILURE, REVOKED); return it.

        Listens on ``<queue>_task_done`` and re-reads the row after every notification, after
        every reconnect of the listener and at least every few seconds, so a lost notification
        can never keep it waiting once the task has ended.

        :param timeout: seconds; None waits for ever.
        :raises TaskTimeout: the task was not ready within ``timeout``.
        :raises TaskNotFound: no task has this id.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        task = self._require_task(task_id)
        if task.done():
            return task
        listener = self._ensure_listener()
        event = threading.Event()
        with self._waiters_lock:
            self._waiters[task.id] = event
        try:
            listener.listen([self.channel("task_done", task.queue)], timeout=timeout)
            while True:
                task = self._require_task(task.id)
                if task.done():
                    return task
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TaskTimeout(
                        f"task {task.id} ({task.name}) is still {task.status_string()} after "
                        f"{timeout}s"
                    )
                event.wait(WAIT_RECHECK if remaining is None else min(remaining, WAIT_RECHECK))
                event.clear()
        finally:
            with self._waiters_lock:
                self._waiters.pop(task.id, None)

    def _require_task(self, task_id: str) -> Task:
        task = self.get_task(task_id)
        if task is None:
            raise TaskNotFound(f"no task has id {task_id!r}")
        return task

    def _ensure_listener(self) -> Listener:
        with self._pool_lock:
            if self._listener is None:
                self._listener = Listener(
                    self.dsn,
                    [],
                    on_notify=self._on_notify,
                    on_reconnect=self._wake_all_waiters,
                    application_name="pgqueue-client-listener",
                )
                self._listener.start()
            return self._listener

    def _on_notify(self, channel: str, payload: str) -> None:
        with self._waiters_lock:
            event = self._waiters.get(payload)
        if event is not None:
            event.set()

    def _wake_all_waiters(self) -> None:
        with self._waiters_lock:
            for event in self._waiters.values():
                event.set()

    # -- maintenance -----------------------------------------------------------------------

    def flush(self) -> int:
        """Delete every task of this backend's queue that has not started (QUEUED or RETRY),
        as pulsar's ``flush``; return how many were deleted."""
        with self.connection() as conn:
            cur = conn.execute(self.sql.flush_queue, {"queue": self.name})
            return cur.rowcount

    # -- connections -----------------------------------------------------------------------

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
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            raise SchemaError(
                f"pgqueue's tables are missing ({exc.diag.message_primary}): run "
                f"`pgqueue migrate --dsn '{_db.redact(self.dsn)}'`"
            ) from None
        except psycopg.OperationalError as exc:
            raise ConnectionFailed(_db.connection_error_message(self.dsn, exc)) from None

    def _open_pool(self) -> ConnectionPool[Connection]:
        with self._pool_lock:
            if self._pool is None:
                _db.connect(self.dsn, application_name="pgqueue-client").close()
                self._pool = ConnectionPool(
                    _db.conninfo(self.dsn, "pgqueue-client"),
                    min_size=1,
                    max_size=max(self.pool_size, 1),
                    kwargs={"autocommit": True, "row_factory": dict_row},
                    check=ConnectionPool.check_connection,
                    open=True,
                    name="pgqueue-client",
                )
            return self._pool

    def close(self) -> None:
        """Close the pool and the listener. The backend may be used again afterwards."""
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

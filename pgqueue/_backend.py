"""The :class:`TaskBackend`: queue tasks, read them, wait for them (pulsar's ``TaskBackend``).

Connections: a backend keeps one small pool (``pool_size`` connections, default 2, opened on
first use) for its queries, plus one listener connection, opened by the first
:meth:`TaskBackend.wait_for_task` or :meth:`TaskBackend.await_task`. The ``a``-prefixed
(asyncio) methods use a second pool of at most ``pool_size`` connections on psycopg's async
driver, opened on first use (:mod:`pgqueue._aio`). Methods given ``connection=`` use the
caller's connection, in the caller's transaction, and none of the backend's (transactional
enqueue, :mod:`pgqueue._connections`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from types import TracebackType

from psycopg_pool import ConnectionPool

from . import _db
from ._aio import LoopPool
from ._client.admin import AdminMixin
from ._client.async_api import AsyncMixin
from ._client.core import Connection
from ._client.jobs import JobsMixin
from ._client.reading import POLL_RECHECK, WAIT_RECHECK
from ._jobs import JobRegistry
from ._listener import Listener
from ._store import Store

__all__ = ["POLL_RECHECK", "WAIT_RECHECK", "TaskBackend"]


class TaskBackend(AdminMixin, AsyncMixin, JobsMixin):
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
        (found out by a probe: :func:`pgqueue._listener.listen_target`).

    Raises :class:`pgqueue._errors.ConfigurationError` for a missing or malformed DSN. Use as a
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

    def __enter__(self) -> TaskBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

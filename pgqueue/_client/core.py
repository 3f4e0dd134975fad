"""The shared part of the client: settings, registry, the connection pool, errors."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import _channels, _connections, _db, _replica
from .._aio import LoopPool
from .._errors import (
    ConfigurationError,
    ConnectionFailed,
    SchemaError,
)
from .._jobs import JobRegistry
from .._listener import Listener
from .._store import Op, Store

R = TypeVar("R")

Connection = psycopg.Connection[dict[str, Any]]


class ClientCore:
    """What every part of :class:`pgqueue.TaskBackend` shares: its settings (set by its
    ``__init__``), its registry, its pool of connections and how driver errors are told."""

    dsn: str
    listen_dsn: str | None
    name: str
    task_paths: list[str]
    schema: str
    store: Store
    pool_size: int
    _registry: JobRegistry | None
    _pool: ConnectionPool[Connection] | None
    _pool_lock: threading.Lock
    _listener: Listener | None
    _poll_only: bool
    _apool: LoopPool
    _waiters: dict[str, list[Callable[[], None]]]
    _waiters_lock: threading.Lock

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

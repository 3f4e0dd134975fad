"""The asyncio side of :class:`pgqueue.TaskBackend`: its async connection pool.

The ``a``-prefixed methods of the backend (``aqueue_task``, ``aget_task``, ``await_task``, ...)
run the same statements with the same parameters as their sync twins, on psycopg's async
driver, so they never block the event loop. Their pool is a psycopg_pool
``AsyncConnectionPool`` opened on first use in the running loop; a pool belongs to one loop,
so a backend serves one event loop at a time (a new pool is opened when the old loop has
been closed, as happens between ``asyncio.run`` calls).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import CancelledError
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool._acompat import AQueue
from psycopg_pool.pool_async import MaintenanceTask, StopWorker

from . import _db
from ._errors import ConfigurationError, ConnectionFailed

logger = logging.getLogger("pgqueue.aio")

AsyncConnection = psycopg.AsyncConnection[dict[str, Any]]

#: Seconds to wait for a free pooled connection (and for the first one to open).
POOL_TIMEOUT = 10.0


class _Pool(AsyncConnectionPool[AsyncConnection]):
    """psycopg_pool's ``AsyncConnectionPool`` whose maintenance workers end when cancelled.

    psycopg_pool (3.3.3) catches ``CancelledError`` inside its maintenance tasks (a connect in
    ``_add_connection``, the worker loop itself) as if it were a failed attempt, so a worker
    cancelled mid-connect keeps running. ``asyncio.run`` cancels every task left when its
    main coroutine returns and waits for them all: with a pool left open (no ``aclose()``) and
    a connection being opened at that moment, the loop never closed. Here a worker checks,
    after each task, whether it was asked to stop, and stops.
    """

    async def _connect(self, timeout: float | None = None) -> AsyncConnection:
        try:
            return await super()._connect(timeout)
        except asyncio.CancelledError as exc:
            # The frames of psycopg's connect hold the half-made libpq connection; the pool
            # logs this exception (and a log handler may keep it), which would keep that
            # connection open on the server. Without those frames it is closed at once.
            exc.__traceback__ = None
            raise

    @classmethod
    async def worker(cls, q: AQueue[MaintenanceTask]) -> None:
        """Run maintenance tasks from ``q`` until a ``StopWorker`` or a cancellation (also one
        a task swallowed) arrives."""
        current = asyncio.current_task()
        while not isinstance(task := await q.get(), StopWorker):
            try:
                await task.run()
            except Exception as exc:
                logger.warning("async pool task %s failed: %s", task, exc)
            if current is not None and current.cancelling():
                raise asyncio.CancelledError


class LoopPool:
    """An ``AsyncConnectionPool`` of at most ``max_size`` autocommit connections, bound to the
    event loop it was opened in."""

    def __init__(self, dsn: str, max_size: int, application_name: str) -> None:
        self.dsn = dsn
        self.max_size = max(max_size, 1)
        self.application_name = application_name
        self._pool: _Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Future[None] | None = None
        # The pool's connections, to end them when their loop closed with the pool open.
        self._connections: weakref.WeakSet[AsyncConnection] = weakref.WeakSet()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection; raises :class:`ConnectionFailed` when none is available
        within :data:`POOL_TIMEOUT` seconds, saying why."""
        pool = await self._open()
        try:
            async with pool.connection(timeout=POOL_TIMEOUT) as conn:
                yield conn
        except PoolTimeout:
            await self._probe()  # raises ConnectionFailed saying why, if it can't connect
            raise ConnectionFailed(
                f"no free connection in the async pool for {_db.redact(self.dsn)} after "
                f"{POOL_TIMEOUT}s (pool_size={self.max_size})"
            ) from None

    async def _open(self) -> AsyncConnectionPool[AsyncConnection]:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            if not self._loop.is_closed():
                raise ConfigurationError(
                    "this TaskBackend's async pool belongs to another event loop, still open: "
                    "`await backend.aclose()` in that loop first, or use one TaskBackend per "
                    "event loop"
                )
            self._pool = self._opening = None
            self._end_connections()  # its loop is gone: nothing else would close them
        if self._pool is None or self._opening is None:
            await self._probe()
            if self._pool is not None and self._opening is not None:
                return await self._opened()  # another coroutine opened it meanwhile
            options = await asyncio.to_thread(_db.connection_options, self.dsn)
            if self._pool is not None and self._opening is not None:
                return await self._opened()
            self._loop = loop
            self._pool = _Pool(
                _db.conninfo(self.dsn, self.application_name),
                min_size=1,
                max_size=self.max_size,
                kwargs={"autocommit": True, "row_factory": dict_row, **options},
                configure=self._configure,
                check=_db.acheck_pooled,
                open=False,
                name=self.application_name,
            )
            self._opening = asyncio.ensure_future(self._pool.open(wait=False))
        return await self._opened()

    async def _opened(self) -> AsyncConnectionPool[AsyncConnection]:
        pool, opening = self._pool, self._opening
        assert pool is not None and opening is not None
        await asyncio.shield(opening)
        return pool

    async def _probe(self) -> None:
        """Connect once; raise :class:`ConnectionFailed` (DSN redacted) if that fails."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                _db.conninfo(self.dsn, self.application_name)
            )
        except psycopg.OperationalError as exc:
            raise ConnectionFailed(_db.connection_error_message(self.dsn, exc)) from None
        await conn.close()

    async def _configure(self, conn: AsyncConnection) -> None:
        self._connections.add(conn)
        await _db.aconfigure(conn)

    def _end_connections(self) -> None:
        """Close the connections of a pool whose event loop is closed, at the libpq level
        (``pgconn.finish()``, no loop needed); until then the server kept them open."""
        for conn in list(self._connections):
            if not conn.closed:
                conn.pgconn.finish()
        self._connections.clear()

    async def close(self) -> None:
        """Close the pool (when its loop is still open); it reopens on next use."""
        pool, loop = self._pool, self._loop
        self._pool = self._opening = self._loop = None
        if pool is not None and loop is asyncio.get_running_loop():
            await pool.close()
        elif loop is not None and loop.is_closed():
            self._end_connections()

    def close_from_sync(self, timeout: float = 5.0) -> None:
        """Close the pool from synchronous code (``TaskBackend.close``): on its loop when that
        loop runs in another thread, or by running the stopped loop until the pool is
        closed. Gives up after ``timeout`` seconds; the pool reopens on next use."""
        pool, loop = self._pool, self._loop
        self._pool = self._opening = self._loop = None
        if pool is None or loop is None:
            return
        if loop.is_closed():
            self._end_connections()
            return
        try:
            if loop.is_running():
                if _running_loop() is loop:  # called from a callback of the loop itself
                    loop.create_task(pool.close())
                else:
                    asyncio.run_coroutine_threadsafe(pool.close(), loop).result(timeout)
            elif _running_loop() is None:
                loop.run_until_complete(asyncio.wait_for(pool.close(), timeout))
        except (TimeoutError, RuntimeError, asyncio.CancelledError, CancelledError) as exc:
            # the loop stopped, closed or cancelled the close meanwhile
            logger.debug("async pool not closed cleanly: %s", exc)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

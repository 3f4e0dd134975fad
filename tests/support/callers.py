"""Every kind of connection an application may hand to ``queue_task(connection=...)``.

A :class:`Caller` owns one connection of one kind with a transaction open, and offers the
same awaitable operations whatever the kind, so that one test body covers them all: sync
kinds call the sync methods (``queue_task``), async kinds await the ``a``-prefixed ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
import psycopg
import sqlalchemy
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import pgqueue
from pgqueue._bulk import QueuedTasks

SYNC_KINDS = [
    "psycopg",
    "sqlalchemy-session",
    "sqlalchemy-connection",
    "sqlalchemy-scoped-session",
]
ASYNC_KINDS = [
    "psycopg-async",
    "sqlalchemy-asyncsession",
    "sqlalchemy-asyncconnection",
    "sqlalchemy-asyncsession-asyncpg",
]
KINDS = SYNC_KINDS + ASYNC_KINDS

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)`` in a fresh thread, so that an event loop running in the
    main thread (Playwright's sync API keeps one while its fixture lives) cannot refuse it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _asyncpg_connect(dsn: str) -> Callable[[], Awaitable[Any]]:
    params = conninfo_to_dict(dsn)

    def connect() -> Awaitable[Any]:
        return asyncpg.connect(
            host=params.get("host"),
            port=int(params.get("port") or 5432),
            user=params.get("user"),
            password=params.get("password"),
            database=params.get("dbname"),
        )

    return connect


def sqlalchemy_url(dsn: str) -> str:
    """The test database as a SQLAlchemy URL, as an application would configure it."""
    params = conninfo_to_dict(dsn)
    host = params.get("host") or ""
    on_socket = host.startswith("/")
    return URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=None if on_socket else host,
        port=int(params["port"]) if params.get("port") and not on_socket else None,
        database=params.get("dbname"),
        query={"host": host, "port": params.get("port") or "5432"} if on_socket else {},
    ).render_as_string(hide_password=False)


class Caller:
    """One application connection of ``kind`` on ``dsn``, inside a transaction."""

    def __init__(self, kind: str, dsn: str, backend: pgqueue.TaskBackend) -> None:
        self.kind = kind
        self.dsn = dsn
        self.backend = backend
        self.is_async = kind in ASYNC_KINDS
        self.connection: Any = None
        self._engine: Any = None
        self._close: Any = None

    async def open(self) -> Caller:
        kind, dsn = self.kind, self.dsn
        pool = sqlalchemy.pool.NullPool
        if kind == "psycopg":
            self.connection = psycopg.connect(dsn)
        elif kind == "psycopg-async":
            self.connection = await psycopg.AsyncConnection.connect(dsn)
        elif kind.startswith("sqlalchemy-async"):
            if kind.endswith("asyncpg"):
                creator = _asyncpg_connect(dsn)
                url = "postgresql+asyncpg://"
            else:

                def creator() -> Awaitable[Any]:
                    return psycopg.AsyncConnection.connect(dsn)

                url = "postgresql+psycopg://"
            self._engine = create_async_engine(url, async_creator=creator, poolclass=pool)
            if "asyncsession" in kind:
                self.connection = AsyncSession(self._engine)
            else:
                self.connection = await self._engine.connect()
        else:
            self._engine = sqlalchemy.create_engine(
                "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=pool
            )
            if kind == "sqlalchemy-session":
                self.connection = Session(self._engine)
            elif kind == "sqlalchemy-scoped-session":  # Flask-SQLAlchemy's db.session
                self.connection = scoped_session(sessionmaker(self._engine))
            else:
                self.connection = self._engine.connect()
        return self

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return await getattr(self.backend, f"a{method}")(
                *args, connection=self.connection, **kwargs
            )
        return getattr(self.backend, method)(*args, connection=self.connection, **kwargs)

    async def queue_task(self, jobname: str, **kwargs: Any) -> str | None:
        """``queue_task`` (or ``aqueue_task``) on this connection."""
        result: str | None = await self._call("queue_task", jobname, **kwargs)
        return result

    async def queue_tasks(self, jobname: str, kwargs_list: list[dict[str, Any]]) -> QueuedTasks:
        """``queue_tasks`` (or ``aqueue_tasks``) on this connection."""
        result: QueuedTasks = await self._call("queue_tasks", jobname, kwargs_list)
        return result

    async def get_task(self, task_id: str) -> pgqueue.Task | None:
        """``get_task`` (or ``aget_task``) on this connection: sees its own uncommitted rows."""
        result: pgqueue.Task | None = await self._call("get_task", task_id)
        return result

    async def execute(self, statement: str) -> None:
        """A business write (plain SQL, no parameters) in the same transaction."""
        conn = self.connection
        if isinstance(conn, psycopg.Connection):
            conn.execute(statement)
        elif isinstance(conn, psycopg.AsyncConnection):
            await conn.execute(statement)
        elif isinstance(conn, AsyncSession | AsyncConnection):
            await conn.execute(sqlalchemy.text(statement))
        else:
            conn.execute(sqlalchemy.text(statement))

    async def _finish(self, how: str) -> None:
        result = getattr(self.connection, how)()
        if self.is_async:
            await result

    async def commit(self) -> None:
        await self._finish("commit")

    async def rollback(self) -> None:
        await self._finish("rollback")

    async def close(self) -> None:
        await self._finish("close")
        if self._engine is not None:
            disposed = self._engine.dispose()
            if self.is_async:
                await disposed

"""Running pgqueue's statements on a connection the caller owns (transactional enqueue).

``queue_task(..., connection=X)`` executes its INSERT on ``X`` inside whatever transaction
``X`` has open, and never commits or rolls back: the task exists if and only if the caller's
transaction commits. ``X`` may be

* a psycopg ``Connection`` (sync) or ``AsyncConnection``;
* a SQLAlchemy ``Session``, ``Connection``, ``AsyncSession`` or ``AsyncConnection`` on any
  PostgreSQL driver (the tests use psycopg 3 and asyncpg), or a ``scoped_session`` /
  ``async_scoped_session`` (Flask-SQLAlchemy's ``db.session``), meaning its current session;
* a Django database connection (``django.db.connection``, ``connections[alias]``) on
  PostgreSQL with psycopg 3 (Django 4.2+), meaning the psycopg connection under it, so the
  task joins ``transaction.atomic()``. It is recognised by its shape: pgqueue never imports
  Django.

The operations of :mod:`pgqueue._store` are the same for every kind: psycopg runs their
statements as they are; for SQLAlchemy their ``%(name)s`` parameters become ``:name`` bind
parameters of a ``text()`` construct, which every SQLAlchemy dialect knows how to send. The
op's own decoder turns the rows into its result either way.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from ._errors import ConfigurationError
from ._store import Op
from ._store._op import returns_rows

if TYPE_CHECKING:  # SQLAlchemy loads on the first SQLAlchemy connection a caller passes.
    from sqlalchemy import TextClause

R = TypeVar("R")

SYNC_KINDS = (
    "a psycopg Connection or a SQLAlchemy Session or Connection (or a Django connection, "
    "PostgreSQL on psycopg 3)"
)
ASYNC_KINDS = "a psycopg AsyncConnection or a SQLAlchemy AsyncSession or AsyncConnection"

_PARAM = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=64)
def sqlalchemy_text(statement: str) -> TextClause:
    """``statement`` with ``%(name)s`` parameters rewritten as SQLAlchemy ``(:name)`` binds,
    in parentheses so that a cast such as ``::jsonb`` after them stays a cast; ``%%``
    becomes ``%``.
    """
    from sqlalchemy import text

    return text(_PARAM.sub(r"(:\1)", statement).replace("%%", "%"))


def run(connection: object, op: Op[R]) -> R:
    """Execute ``op`` on the caller's sync ``connection``; return its decoded result.

    Raises :class:`ConfigurationError` for an async connection (use the ``a``-prefixed
    method instead) or an object that is not a supported connection. Database errors are
    the driver's own, as the caller's transaction is the caller's to handle.
    """
    if isinstance(connection, psycopg.Connection):
        return op.run(connection)
    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session, scoped_session

    if isinstance(connection, scoped_session):
        return run(connection(), op)
    if isinstance(connection, Session | SAConnection):
        result = connection.execute(sqlalchemy_text(op.sql), dict(op.params))
        return op.decode([dict(row) for row in result.mappings()], _rowcount(result))
    if isinstance(connection, psycopg.AsyncConnection | AsyncSession | SAAsyncConnection):
        raise ConfigurationError(
            f"{type(connection).__name__} is asynchronous: await the a-prefixed method "
            "(aqueue_task, aqueue_tasks, ...) with it"
        )
    driver = _django_driver_connection(connection)
    if driver is not None:
        return run(driver, op)
    raise ConfigurationError(
        f"connection= must be {SYNC_KINDS} (or, to the a-prefixed methods, {ASYNC_KINDS}), "
        f"not {type(connection).__name__}"
    )


async def arun(connection: object, op: Op[R]) -> R:
    """Execute ``op`` on the caller's async ``connection``; return its decoded result.

    Raises :class:`ConfigurationError` for a sync connection or an unsupported object.
    """
    if isinstance(connection, psycopg.AsyncConnection):
        async with connection.cursor(row_factory=dict_row) as cur:
            await cur.execute(op.sql, op.params)
            return op.decode(await cur.fetchall() if returns_rows(cur) else [], cur.rowcount)
    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session
    from sqlalchemy.orm import Session

    if isinstance(connection, async_scoped_session):
        return await arun(connection(), op)
    if isinstance(connection, AsyncSession | SAAsyncConnection):
        result = await connection.execute(sqlalchemy_text(op.sql), dict(op.params))
        return op.decode([dict(row) for row in result.mappings()], _rowcount(result))
    if isinstance(connection, psycopg.Connection | Session | SAConnection):
        raise ConfigurationError(
            f"{type(connection).__name__} is synchronous: call the method without the a prefix "
            "(queue_task, queue_tasks, ...) with it"
        )
    raise ConfigurationError(
        f"connection= must be {ASYNC_KINDS} (or, to the sync methods, {SYNC_KINDS}), "
        f"not {type(connection).__name__}"
    )


def _django_driver_connection(connection: object) -> psycopg.Connection[Any] | None:
    """The psycopg connection under a Django database wrapper (Django's
    ``BaseDatabaseWrapper``, or the ``django.db.connection`` proxy to one), connected first
    when it is not yet; None for an object of another shape. Django keeps its transaction
    state on that psycopg connection, so a statement run on it joins ``transaction.atomic()``
    (and commits at once outside one, as Django's autocommit does).

    :raises ConfigurationError: the wrapper's database is not PostgreSQL on psycopg 3.
    """
    vendor = getattr(connection, "vendor", None)
    ensure_connection = getattr(connection, "ensure_connection", None)
    if not isinstance(vendor, str) or not callable(ensure_connection):
        return None
    if vendor != "postgresql":
        raise ConfigurationError(
            f"connection=: this Django connection is {vendor}, pgqueue needs PostgreSQL"
        )
    ensure_connection()
    driver = getattr(connection, "connection", None)
    if not isinstance(driver, psycopg.Connection):
        raise ConfigurationError(
            "connection=: this Django connection runs on "
            f"{type(driver).__module__.split('.')[0]}; pgqueue needs psycopg 3 "
            "(Django 4.2+ with the psycopg package installed)"
        )
    return driver


def _rowcount(result: object) -> int:
    """The rows a SQLAlchemy result changed, -1 when its kind does not say."""
    count = getattr(result, "rowcount", -1)
    return count if isinstance(count, int) else -1

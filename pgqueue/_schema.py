"""Creating and checking pgqueue's schema: ``pgqueue migrate`` and the worker's start-up check."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import psycopg

from ._db import conninfo, migrate_command, pooling, redact
from ._errors import ConfigurationError, ConnectionFailed, SchemaError, first_line
from ._store import Store

if TYPE_CHECKING:  # Alembic and SQLAlchemy load only when migrating: workers start faster.
    import sqlalchemy
    from alembic.config import Config

logger = logging.getLogger("pgqueue.schema")

#: How many times :func:`migrate` runs the migration when a lock was not granted within the
#: migration's ``lock_timeout`` (F28), and the longest pause in seconds between two runs.
MIGRATION_ATTEMPTS = 8
MIGRATION_MAX_PAUSE = 8.0

#: The newest revision this version of pgqueue needs. A test keeps it equal to Alembic's head.
SCHEMA_REVISION = "pgqueue_0017_fewer_notifications"


def alembic_config(schema: str) -> Config:
    """An Alembic ``Config`` for pgqueue's own revisions, writing to ``schema``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("pgqueue.migrations")))
    cfg.cmd_opts = argparse.Namespace(x=[f"pgqueue_schema={schema}"])
    return cfg


def head_revision() -> str:
    """The head of pgqueue's revision history as shipped in this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("pgqueue")).get_current_head()
    assert head is not None
    return head


@contextmanager
def _sqlalchemy_connection(dsn: str) -> Iterator[sqlalchemy.Connection]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(conninfo(dsn, "pgqueue-migrate")),
        poolclass=sqlalchemy.pool.NullPool,
    )
    try:
        with engine.connect() as connection:
            yield connection
    except sqlalchemy.exc.OperationalError as exc:
        raise ConnectionFailed(
            f"cannot migrate {redact(dsn)}: {str(exc.orig).strip().splitlines()[0]}"
        ) from None
    finally:
        engine.dispose()


def migrate(dsn: str, schema: str, revision: str = "heads") -> None:
    """Apply pgqueue's revisions up to ``revision`` (default: all) to ``schema``.

    Concurrent calls against one database are serialized by a session advisory lock taken in
    the Alembic environment, so many workers may run this at start-up. Each lock is waited
    for at most ``MIGRATION_LOCK_TIMEOUT`` (2 s), so a long reader of a table never makes the
    migration queue every later reader behind itself (F28); the migration then rolls back and
    runs again after a pause (0.5 s, doubling up to :data:`MIGRATION_MAX_PAUSE`), up to
    :data:`MIGRATION_ATTEMPTS` times.

    :raises ConnectionFailed: the database cannot be reached.
    :raises SchemaError: the locks were still held by others after the last attempt.
    :raises ConfigurationError: ``dsn`` goes through a transaction pooler, which would move the
        advisory lock's session under it (:func:`pgqueue._db.pooling`).
    """
    import sqlalchemy
    from alembic import command

    found = pooling(dsn)
    if found.pooled:
        raise ConfigurationError(
            f"cannot migrate through a transaction pooler ({found.why}): migrations hold a "
            "session advisory lock across transactions. Run `pgqueue migrate` with a DSN "
            "straight to PostgreSQL (or through a pool in session mode)"
        )

    cfg = alembic_config(schema)
    pause = 0.5
    for attempt in range(1, MIGRATION_ATTEMPTS + 1):
        with _sqlalchemy_connection(dsn) as connection:
            cfg.attributes["connection"] = connection
            try:
                command.upgrade(cfg, revision)
                return
            except sqlalchemy.exc.OperationalError as exc:
                if not isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                    raise
                why = first_line(exc.orig)
        if attempt == MIGRATION_ATTEMPTS:
            break
        logger.warning(
            "migration attempt %d of %d rolled back (%s: another session holds a lock it "
            "needs); trying again in %.1fs",
            attempt,
            MIGRATION_ATTEMPTS,
            why,
            pause,
        )
        time.sleep(pause)
        pause = min(pause * 2, MIGRATION_MAX_PAUSE)
    raise SchemaError(
        f"the migration could not get its locks in {MIGRATION_ATTEMPTS} attempts ({why}): "
        "a long transaction holds a pgqueue table or view (see pg_stat_activity and pg_locks); "
        "end it or run `pgqueue migrate` again later. Nothing was changed."
    )


def migration_sql(schema: str, revision: str = "heads") -> None:
    """Print the SQL of pgqueue's revisions (Alembic offline mode) to standard output."""
    from alembic import command

    command.upgrade(alembic_config(schema), revision, sql=True)


def check_schema(conn: psycopg.Connection[Any], schema: str, dsn: str) -> None:
    """Raise :class:`SchemaError` unless ``schema`` holds :data:`SCHEMA_REVISION`.

    The message names the command that fixes it.
    """
    fix = f"run `{migrate_command(dsn, schema)}`"
    try:
        found = Store(schema).schema_has_revision(revision=SCHEMA_REVISION).run(conn)
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        raise SchemaError(
            f"the database has no pgqueue schema {schema!r} yet: {fix} first"
        ) from None
    if not found:
        raise SchemaError(
            f"the pgqueue schema {schema!r} is older than this pgqueue needs "
            f"(revision {SCHEMA_REVISION} is missing): {fix}"
        )

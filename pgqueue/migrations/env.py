"""Alembic environment for ``pgqueue migrate``.

Applies pgqueue's revisions while holding a session advisory lock, so that several processes
migrating one database at once run one after another instead of racing. The version table is
``<schema>.alembic_version``, apart from any application's own. Table locks are waited for at
most ``MIGRATION_LOCK_TIMEOUT`` (F28; ``pgqueue migrate`` retries).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from pgqueue._db import quote_ident
from pgqueue.alembic_host import target_schema
from pgqueue.migrations import MIGRATION_LOCK_KEY, limit_lock_waits


def _configure(schema: str, **kwargs: object) -> None:
    context.configure(
        version_table="alembic_version",
        version_table_schema=schema,
        transactional_ddl=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    schema = target_schema()
    # "named" paramstyle: the default (pyformat) would print every % of the SQL as %%.
    _configure(
        schema,
        url="postgresql://",
        literal_binds=True,
        dialect_name="postgresql",
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        limit_lock_waits()
        context.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        context.run_migrations()


def run_online(connection: Connection) -> None:
    schema = target_schema()
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    try:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}"))
        connection.commit()
        _configure(schema, connection=connection)
        with context.begin_transaction():
            limit_lock_waits()
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    given = context.config.attributes.get("connection")
    if given is None:
        raise RuntimeError("run pgqueue's migrations through `pgqueue migrate`")
    run_online(given)

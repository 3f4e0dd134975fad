"""pgqueue's Alembic revisions, installed as ``pgqueue.migrations``.

Run them with ``pgqueue migrate``, or put them into an application's own Alembic history
(see the README, "Alembic in your application"). Revisions are plain SQL an operator can read;
every object lives in one schema (default ``pgqueue``; ``PGQUEUE_SCHEMA`` or
``-x pgqueue_schema=NAME`` chooses another).
"""

from __future__ import annotations

from alembic import op

from pgqueue._db import quote_ident
from pgqueue.alembic_host import BRANCH_LABEL as BRANCH_LABEL  # re-exported for revisions
from pgqueue.alembic_host import target_schema

#: ``pg_advisory_lock`` key that serializes concurrent migrations: "pgqueue " as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"pgqueue ", "big", signed=True)

#: ``lock_timeout`` of a migration's transaction (F28): a statement that cannot get its lock
#: this soon fails instead of waiting behind a long reader, which would queue every later
#: reader of that table behind the migration. ``pgqueue migrate`` then rolls back and tries
#: again (:func:`pgqueue._schema.migrate`).
MIGRATION_LOCK_TIMEOUT = "2s"


def limit_lock_waits() -> None:
    """Set :data:`MIGRATION_LOCK_TIMEOUT` for the migration's transaction (``SET LOCAL``, so
    nothing outlives it); in ``--sql`` output, with a comment on what to do when it fires."""
    from alembic import context

    if context.is_offline_mode():
        context.get_context().impl.static_output(
            "-- Each lock is waited for at most lock_timeout, so that this migration never\n"
            "-- queues the readers of a table behind itself. If a statement fails with\n"
            "-- 'canceling statement due to lock timeout', the whole transaction is rolled\n"
            "-- back: run the script again (a few times, a few seconds apart) until it passes."
        )
    context.execute(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT}'")


def run_sql(template: str) -> None:
    """Execute DDL, with ``{s}`` replaced by the quoted target schema."""
    op.execute(template.replace("{s}", quote_ident(target_schema())))


def record_revision(revision: str) -> None:
    """Record ``revision`` in ``schema_version``, which workers check before they start."""
    run_sql(f"INSERT INTO {{s}}.schema_version (revision) VALUES ('{revision}')")


def forget_revision(revision: str) -> None:
    """Undo :func:`record_revision` on downgrade."""
    run_sql(f"DELETE FROM {{s}}.schema_version WHERE revision = '{revision}'")

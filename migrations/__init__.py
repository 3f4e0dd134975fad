"""pgqueue's Alembic revisions, installed as ``pgqueue.migrations``.

Run them with ``pgqueue migrate``, or put them into an application's own Alembic history
(see the README, "Alembic in your application"). Revisions are plain SQL an operator can read;
every object lives in one schema (default ``pgqueue``; ``PGQUEUE_SCHEMA`` or
``-x pgqueue_schema=NAME`` chooses another).
"""

from __future__ import annotations

from alembic import context, op

from pgqueue._db import quote_ident, resolve_schema

#: Alembic branch label of pgqueue's revisions.
BRANCH_LABEL = "pgqueue"

#: ``pg_advisory_lock`` key that serializes concurrent migrations: "pgqueue " as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"pgqueue ", "big", signed=True)


def target_schema() -> str:
    """The schema the running migration writes to (``-x pgqueue_schema=``, else the default)."""
    try:
        given = context.get_x_argument(as_dictionary=True).get("pgqueue_schema")
    except Exception:  # not inside an Alembic command (e.g. imported by a test)
        given = None
    return resolve_schema(given)


def run_sql(template: str) -> None:
    """Execute DDL, with ``{s}`` replaced by the quoted target schema."""
    op.execute(template.replace("{s}", quote_ident(target_schema())))


def record_revision(revision: str) -> None:
    """Record ``revision`` in ``schema_version``, which workers check before they start."""
    run_sql(f"INSERT INTO {{s}}.schema_version (revision) VALUES ('{revision}')")


def forget_revision(revision: str) -> None:
    """Undo :func:`record_revision` on downgrade."""
    run_sql(f"DELETE FROM {{s}}.schema_version WHERE revision = '{revision}'")

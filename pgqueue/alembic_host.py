"""Putting pgqueue's revisions into an application's own Alembic history.

An application that already migrates with Alembic can carry pgqueue's schema in its own
history instead of running ``pgqueue migrate``. Three steps (docs/guides/upgrading.md,
"Alembic in your application"):

1. ``alembic.ini``: add pgqueue's revisions to ``version_locations``::

       version_locations = %(here)s/migrations/versions pgqueue.migrations:versions
       path_separator = space

   Its revisions carry the branch label ``pgqueue``; ``alembic upgrade heads`` applies them.
2. ``env.py``: create pgqueue's schema before the revisions run, and keep autogenerate away
   from pgqueue's tables, which are not in the application's metadata::

       from pgqueue.alembic_host import create_schema, include_name
       context.configure(..., include_schemas=True, include_name=include_name)
       with context.begin_transaction():
           create_schema()
           context.run_migrations()

3. A revision of the application that needs pgqueue's objects (say a trigger calling
   ``pgqueue.queue_task``) names the pgqueue revision it needs in ``depends_on``.

Use one way only: either this, or ``pgqueue migrate`` (which keeps its own version table in
pgqueue's schema), not both on one database. The schema is ``pgqueue`` unless
``-x pgqueue_schema=NAME`` or ``$PGQUEUE_SCHEMA`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

from alembic import context

from ._db import quote_ident, resolve_schema

#: Alembic branch label of pgqueue's revisions.
BRANCH_LABEL = "pgqueue"

#: The ``version_locations`` entry for pgqueue's revisions (an importable resource path).
VERSION_LOCATION = "pgqueue.migrations:versions"


def target_schema() -> str:
    """The schema pgqueue's revisions write to: ``-x pgqueue_schema=NAME`` of the running
    Alembic command, else ``$PGQUEUE_SCHEMA``, else ``pgqueue``."""
    try:
        given = context.get_x_argument(as_dictionary=True).get("pgqueue_schema")
    except Exception:  # not inside an Alembic command (e.g. imported by a test)
        given = None
    return resolve_schema(given)


def include_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
    """Alembic ``include_name`` hook: False for pgqueue's schema and everything in it, so
    autogenerate neither reflects pgqueue's tables nor proposes dropping them.

    :param name: the object's name; ``type_``: ``"schema"``, ``"table"``, ``"column"``, ...;
        ``parent_names``: Alembic's names of the enclosing schema/table.
    Chain it with a hook of your own by calling it first. It works by schema, so pgqueue
    must have a schema of its own (the default), not share the application's.
    """
    schema = target_schema()
    if type_ == "schema":
        return name != schema
    return parent_names.get("schema_name") != schema


def create_schema() -> None:
    """``CREATE SCHEMA IF NOT EXISTS`` pgqueue's schema, on the migration's connection (or
    into the offline SQL). Call it inside ``context.begin_transaction()``, before
    ``context.run_migrations()``."""
    context.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(target_schema())}")

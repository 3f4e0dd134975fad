"""``pgqueue``: the operator's command line (migrate, demo, ...)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import _db, schema
from ._cli_common import friendly_errors, setup_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

DsnOption = Annotated[
    str | None,
    typer.Option("--dsn", envvar="PGQUEUE_DSN", help="PostgreSQL DSN (default $PGQUEUE_DSN)."),
]


@app.callback()
def _group() -> None:
    """pgqueue: a durable job queue for Python that lives in PostgreSQL."""


SchemaOption = Annotated[
    str | None,
    typer.Option("--schema", envvar="PGQUEUE_SCHEMA", help="Schema of pgqueue's tables."),
]


@app.command()
def migrate(
    dsn: DsnOption = None,
    schema_name: SchemaOption = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it.")
    ] = False,
) -> None:
    """Create or upgrade pgqueue's schema (safe to run from many processes at once)."""
    setup_logging("WARNING")
    with friendly_errors():
        target = _db.resolve_schema(schema_name)
        if sql:
            schema.migration_sql(target)
            return
        url = _db.resolve_dsn(dsn)
        schema.migrate(url, target)
        typer.echo(f"pgqueue schema {target!r} is at revision {schema.SCHEMA_REVISION}")


def main() -> None:
    """Console-script entry point."""
    app()

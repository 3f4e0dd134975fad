"""``pgqueue``: the operator's command line.

Each subcommand lives in a module by topic and is registered here: schema (``migrate``, below),
single tasks (:mod:`pgqueue._cli_tasks`), the whole queue (:mod:`pgqueue._cli_ops`), periodic
jobs (:mod:`pgqueue._cli_schedule`), flow control (:mod:`pgqueue._cli_flow`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import _cli_flow, _cli_ops, _cli_schedule, _cli_tasks, _db
from . import _demo as demo
from . import _schema as schema
from ._cli_common import VersionOption, friendly_errors, run_app, setup_command_logging
from ._cli_options import DsnOption, SchemaOption

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="pgqueue: a durable job queue for Python that lives in PostgreSQL.",
)

__all__ = ["DsnOption", "SchemaOption", "app", "main"]


@app.callback()
def _group(version: VersionOption = False) -> None:
    """pgqueue: a durable job queue for Python that lives in PostgreSQL."""


@app.command()
def migrate(
    dsn: DsnOption = None,
    schema_name: SchemaOption = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it.")
    ] = False,
) -> None:
    """Create or upgrade pgqueue's schema (safe to run from many processes at once)."""
    setup_command_logging()
    with friendly_errors():
        target = _db.resolve_schema(schema_name)
        if sql:
            schema.migration_sql(target)
            return
        url = _db.resolve_dsn(dsn)
        schema.migrate(url, target)
        typer.echo(f"pgqueue schema {target!r} is at revision {schema.SCHEMA_REVISION}")


# Operations: reading the queue and acting on it.
app.command()(_cli_ops.status)
app.command("list")(_cli_tasks.list_tasks)
app.command()(_cli_tasks.show)
app.command()(_cli_tasks.queue)
app.command()(_cli_tasks.revoke)
app.command()(_cli_tasks.retry)
app.command()(_cli_tasks.wait)
app.command()(_cli_ops.workers)
app.command()(_cli_ops.prune)
app.command()(_cli_ops.dashboard)
app.add_typer(_cli_schedule.app, name="schedule")
app.command()(_cli_flow.pause)
app.command()(_cli_flow.resume)

# pgqueue end to end on real input (pgqueue._demo).
app.command()(demo.demo)


def main() -> None:
    """Console-script entry point."""
    run_app(app)

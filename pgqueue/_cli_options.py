"""Options and set-up shared by the ``pgqueue`` subcommands: --dsn, --schema, --json."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from ._ops import Operations
from .backend import TaskBackend

DsnOption = Annotated[
    str | None,
    typer.Option("--dsn", envvar="PGQUEUE_DSN", help="PostgreSQL DSN (default $PGQUEUE_DSN)."),
]
SchemaOption = Annotated[
    str | None,
    typer.Option("--schema", envvar="PGQUEUE_SCHEMA", help="Schema of pgqueue's tables."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (one document) instead of a table.")
]
TaskIdArgument = Annotated[str, typer.Argument(metavar="ID", help="Task id (a UUID).")]
#: A task id or a unique prefix of one (the 8 characters log lines show).
TaskRefArgument = Annotated[
    str,
    typer.Argument(
        metavar="ID", help="Task id (a UUID), or a unique prefix of one (8 characters)."
    ),
]


@contextmanager
def operations(dsn: str | None, schema: str | None) -> Iterator[Operations]:
    """:class:`Operations` on a backend with a one-connection pool, closed afterwards."""
    backend = TaskBackend(dsn, schema=schema, pool_size=1)
    try:
        yield Operations(backend)
    finally:
        backend.close()

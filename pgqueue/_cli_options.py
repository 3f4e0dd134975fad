"""Options and set-up shared by the ``pgqueue`` subcommands: --dsn, --schema, --json."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from ._backend import TaskBackend
from ._ops import Operations

DsnOption = Annotated[
    str | None,
    typer.Option("--dsn", envvar="PGQUEUE_DSN", help="PostgreSQL DSN (default $PGQUEUE_DSN)."),
]
ReadDsnOption = Annotated[
    str | None,
    typer.Option(
        "--read-dsn",
        envvar="PGQUEUE_READ_DSN",
        help="Read from this DSN (a streaming standby) instead of --dsn; says how stale it is.",
    ),
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
def operations(
    dsn: str | None, schema: str | None, read_dsn: str | None = None
) -> Iterator[Operations]:
    """:class:`Operations` on a backend with a one-connection pool, closed afterwards; on
    ``read_dsn`` instead of ``dsn`` when given (the read-only commands: status, list, show)."""
    backend = TaskBackend(read_dsn or dsn, schema=schema, pool_size=1)
    try:
        yield Operations(backend)
    finally:
        backend.close()


def note_staleness(ops: Operations) -> None:
    """On stderr (so that ``--json`` output stays one document), one line saying that the
    rows come from a standby and how far behind the primary it is; nothing on a primary."""
    stale = ops.staleness()
    if stale is not None:
        print(f"pgqueue: {stale}", file=sys.stderr)

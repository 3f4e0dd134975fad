"""What pgqueue's command-line programs share: logging set-up and turning errors into exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import psycopg
import typer

from ._db import is_connection_error
from ._exits import EXIT_FAILED, EXIT_OK, EXIT_SCHEMA, EXIT_UNAVAILABLE, EXIT_USAGE
from .errors import ConfigurationError, ConnectionFailed, PgQueueError, SchemaError, first_line

#: The exit statuses of the command-line programs (defined in :mod:`pgqueue._exits`).
__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_SCHEMA",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "friendly_errors",
    "setup_logging",
    "split_list",
]

_EXIT_CODES: list[tuple[type[PgQueueError], int]] = [
    (ConnectionFailed, EXIT_UNAVAILABLE),
    (SchemaError, EXIT_SCHEMA),
    (ConfigurationError, EXIT_USAGE),
]


def setup_logging(level: str) -> None:
    """Log to stderr as ``time level name: message``."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn pgqueue's errors into one ``error: ...`` line and an exit status, no traceback."""
    try:
        yield
    except PgQueueError as exc:
        code = next((c for kind, c in _EXIT_CODES if isinstance(exc, kind)), EXIT_FAILED)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code) from None
    except psycopg.Error as exc:
        if is_connection_error(exc):
            typer.echo(f"error: the database connection failed: {first_line(exc)}", err=True)
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        advice = (
            " If the schema was changed by hand or by another pgqueue version, run "
            "`pgqueue migrate`."
            if (exc.sqlstate or "").startswith("42")
            else ""
        )
        typer.echo(f"error: the database refused a statement: {first_line(exc)}.{advice}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _print_version(value: bool) -> None:
    if value:
        from . import __version__  # the package imports this module (via the supervisor)

        typer.echo(f"pgqueue {__version__}")
        raise typer.Exit(EXIT_OK)


#: ``--version``: print ``pgqueue <version>`` and exit 0, before anything else is checked.
VersionOption = Annotated[
    bool,
    typer.Option(
        "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
]

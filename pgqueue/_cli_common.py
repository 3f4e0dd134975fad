"""What pgqueue's command-line programs share: logging set-up, and turning errors (pgqueue's,
the database's, and typer's usage errors) into one ``error: ...`` line and an exit status."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Protocol, cast

import psycopg
import typer

from ._db import is_connection_error
from ._errors import (
    ConfigurationError,
    ConnectionFailed,
    PgQueueError,
    SchemaError,
    TaskNotAvailable,
    first_line,
)
from ._exits import EXIT_FAILED, EXIT_OK, EXIT_SCHEMA, EXIT_UNAVAILABLE, EXIT_USAGE
from ._log_format import LOG_FORMATS, formatter

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
    (TaskNotAvailable, EXIT_USAGE),  # an unknown job name is a bad argument
]


#: The values of ``--log-level``.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level_name(value: str) -> str:
    """``--log-level``'s check: the level in capitals; raises :class:`typer.BadParameter` (a
    usage error, exit 2) for a name that is not one of :data:`LOG_LEVELS`."""
    if value.upper() not in LOG_LEVELS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value.upper()


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr, one line per record: ``time level name: message`` (``text``) or one
    JSON object (``json``), see :mod:`pgqueue._log_format`. Python warnings (a library's
    ``RuntimeWarning``, say psycopg_pool's during a failover) go through the same handler, so
    they are one line too, under the logger ``py.warnings``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.captureWarnings(True)


def log_format_name(value: str) -> str:
    """``--log-format``'s check: ``text`` or ``json``; raises :class:`typer.BadParameter`."""
    if value.lower() not in LOG_FORMATS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(LOG_FORMATS)}")
    return value.lower()


#: Loggers whose warnings are about retrying a lost connection: a one-shot command shows its
#: own ``error:`` line when the retries fail, so these stay quiet there (not in the worker).
RETRY_LOGGERS = ("psycopg", "pgqueue.listener")


def setup_command_logging() -> None:
    """Logging of a one-shot command (``pgqueue status``, ``wait``, ...): warnings to stderr,
    except the connection-retry warnings of :data:`RETRY_LOGGERS` (errors only), so an outage
    ends in the command's one ``error: ...`` line rather than a dozen library warnings."""
    setup_logging("WARNING")
    for name in RETRY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


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


def run_app(app: typer.Typer) -> None:
    """Run a typer application as a console script, its usage errors (an unknown option, a
    bad value, a missing argument) printed as one line ``error: ... (see `CMD --help`)`` on
    stderr with exit status 2, as docs/guides/operations.md documents, instead of typer's
    boxed usage text. A bare group prints its help (exit 2). Never returns (:func:`sys.exit`)."""
    try:
        code = app(standalone_mode=False)
    except _CLICK_ERRORS as exc:
        problem = cast(_ClickError, exc)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `pgqueue` alone: the help is shown
            sys.exit(EXIT_USAGE)
        message = " ".join(problem.format_message().split())
        context = getattr(exc, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(problem.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


class _ClickError(Protocol):
    """What click's ``ClickException`` (and typer's copy of it) offers."""

    exit_code: int

    def format_message(self) -> str: ...


def _click_errors() -> tuple[type[Exception], ...]:
    """The exception classes of the click that typer runs on: typer's own copy of click
    (whose base is ``typer.TyperException``) in recent typer versions, click in older ones."""
    kinds: list[type[Exception]] = []
    vendored = getattr(typer, "TyperException", None)
    if isinstance(vendored, type) and issubclass(vendored, Exception):
        kinds.append(vendored)
    try:
        import click
    except ImportError:  # pragma: no cover - typer vendors click
        pass
    else:
        kinds.append(click.ClickException)
    return tuple(kinds)


_CLICK_ERRORS = _click_errors()

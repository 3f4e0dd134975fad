"""``pgqueue status/workers/prune/dashboard``: the subcommands about the whole queue."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import _cli_render as render
from . import _db
from ._cli_common import (
    EXIT_USAGE,
    friendly_errors,
    setup_command_logging,
    setup_logging,
    split_list,
)
from ._cli_options import (
    DsnOption,
    JsonOption,
    ReadDsnOption,
    SchemaOption,
    note_staleness,
    operations,
)
from ._errors import ConfigurationError
from ._format import format_seconds
from ._ops import Overview, parse_duration, parse_states
from ._schema import check_schema
from .states import READY_STATES

_QUEUE_COLUMNS: list[render.Column] = [
    ("queue", "queue", render.text),
    ("job", "name", render.text),
    ("queued", "queued", render.text),
    ("due", "due", render.text),
    ("started", "started", render.text),
    ("retry", "retry", render.text),
    ("failure 1h", "failure_last_hour", render.text),
    ("success 1h", "success_last_hour", render.text),
    ("revoked 1h", "revoked_last_hour", render.text),
    ("oldest due", "oldest_due_age", format_seconds),
]
_THROUGHPUT_COLUMNS: list[render.Column] = [
    ("queue", "queue", render.text),
    ("job", "name", render.text),
    ("last", "period", render.text),
    ("finished", "finished", render.text),
    ("failed", "failed", render.text),
    ("per s", "per_second", lambda v: f"{v:.3g}"),
    ("wait p50", "wait_p50", format_seconds),
    ("wait p95", "wait_p95", format_seconds),
    ("run p50", "run_p50", format_seconds),
    ("run p95", "run_p95", format_seconds),
]
_FLOW_COLUMNS: list[render.Column] = [
    ("queue", "queue", render.text),
    ("paused", "paused_at", lambda v: f"since {render.stamp(v)}" if v else "no"),
    ("concurrency", "concurrency", render.text),
    ("started", "started", render.text),
    ("rate", "rate_count", render.text),
    ("per s", "rate_seconds", render.text),
    ("waiting", "waiting", render.text),
]
_LIMIT_COLUMNS: list[render.Column] = [
    ("job", "name", render.text),
    ("key", "limit_key", render.text),
    ("concurrency", "concurrency", render.text),
    ("started", "started", render.text),
    ("rate", "rate_count", render.text),
    ("per s", "rate_seconds", render.text),
    ("in window", "recent_starts", render.text),
    ("waiting", "waiting", render.text),
]
_STUCK_COLUMNS: list[render.Column] = [
    ("id", "id", render.text),
    ("job", "name", render.text),
    ("state", "state", render.state),
    ("reason", "reason", render.text),
    ("overdue", "overdue", format_seconds),
    ("worker", "worker", render.text),
]
_WORKER_COLUMNS: list[render.Column] = [
    ("id", "id", render.text),
    ("state", "state", render.text),
    ("queues", "queues", render.text),
    ("backlog", "backlog", render.text),
    ("running", "running", render.text),
    ("jobs", "jobs", render.text),
    ("heartbeat", "heartbeat_age", format_seconds),
    ("started", "started_at", render.stamp),
]


def status(
    dsn: DsnOption = None,
    schema: SchemaOption = None,
    as_json: JsonOption = False,
    read_dsn: ReadDsnOption = None,
) -> None:
    """One screen: tasks by queue, job and state, throughput, workers, stuck tasks."""
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema, read_dsn) as ops:
        note_staleness(ops)
        overview = ops.overview()
    if as_json:
        render.print_json(overview.as_json())
        return
    _print_overview(overview)


def _print_overview(overview: Overview) -> None:
    out = render.console
    if not overview.queues:
        out.print("no tasks yet (none live, none finished within the last hour)")
    else:
        out.print(render.table("Tasks by queue and job", overview.queues, _QUEUE_COLUMNS))
    if overview.throughput:
        out.print()
        out.print(render.table("Finished recently", overview.throughput, _THROUGHPUT_COLUMNS))
    workers = overview.workers
    out.print()
    out.print(
        f"workers: [green]{workers['alive']} alive[/], {workers['stopped']} stopped, "
        f"[{'red' if workers['lost'] else 'white'}]{workers['lost']} lost[/] (last hour)"
    )
    if overview.stuck:
        out.print()
        out.print(render.table(f"{len(overview.stuck)} stuck", overview.stuck, _STUCK_COLUMNS))
    if overview.settings:
        out.print()
        out.print(render.table("Paused and limited queues", overview.settings, _FLOW_COLUMNS))
    if overview.limits:
        out.print()
        out.print(
            render.table("Limited jobs (most waiting first)", overview.limits, _LIMIT_COLUMNS)
        )
    if overview.paused:
        out.print(f"[yellow]paused queues: {', '.join(overview.paused)}[/]")
    out.print(f"notification queue: {overview.notify_queue_usage:.1%} used")
    if overview.notify_queue_warning:
        out.print(f"[red]warning: {overview.notify_queue_warning}[/]")


def workers(
    show_all: Annotated[
        bool, typer.Option("--all", help="Every worker ever registered, not just the last hour.")
    ] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
    as_json: JsonOption = False,
) -> None:
    """Live workers, and those stopped or lost within the last hour, with what they run."""
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema) as ops:
        rows = ops.workers(recent=None if show_all else 3600.0)
    if as_json:
        render.print_json(rows)
        return
    render.console.print(render.table(f"{len(rows)} workers", rows, _WORKER_COLUMNS))


def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete tasks that ended longer ago (7d, 12h).")
    ],
    state: Annotated[
        list[str] | None,
        typer.Option(help="Only these finished states (default SUCCESS, FAILURE, REVOKED)."),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=100000, help="Rows per transaction.")] = 1000,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be deleted.")] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
) -> None:
    """Delete finished tasks (retention) in small batches, with a progress bar."""
    setup_command_logging()
    with friendly_errors():
        seconds = parse_duration(older_than, "--older-than")
        names = [part for value in state or [] for part in split_list(value)]
        codes = parse_states(names, allowed=READY_STATES) or sorted(READY_STATES)
        with operations(dsn, schema) as ops:
            total = ops.count_prunable(seconds, codes)
            if dry_run:
                print(f"{total} tasks would be deleted")
                return
            deleted = 0
            with Progress(
                TextColumn("pruning"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            ) as progress:
                bar = progress.add_task("prune", total=total)
                while True:
                    n = ops.prune_batch(seconds, codes, batch)
                    deleted += n
                    progress.update(bar, completed=min(deleted, total))
                    if n < batch:
                        break
    print(f"deleted {deleted} tasks")


def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, allow no action.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="PGQUEUE_DASHBOARD_TOKEN",
            help="Require this secret (HTTP basic auth password, or a Bearer token); "
            "required when listening beyond loopback. Prefer $PGQUEUE_DASHBOARD_TOKEN or "
            "--token-file: a command-line argument shows in `ps`.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            envvar="PGQUEUE_DASHBOARD_TOKEN_FILE",
            help="Read the token from this file (its first line).",
        ),
    ] = None,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
    read_dsn: ReadDsnOption = None,
) -> None:
    """Serve the web dashboard: queues, tasks, workers, schedules; revoke and retry."""
    setup_logging("INFO")
    with friendly_errors():
        token = _resolve_token(token, token_file)
        if token is None and not _is_loopback(host):
            raise ConfigurationError(
                f"the dashboard would listen on {host} without authentication: pass --token "
                "(or set PGQUEUE_DASHBOARD_TOKEN), or listen on 127.0.0.1"
            )
        try:
            from ._dashboard import serve
        except ImportError as exc:
            typer.echo(
                f"error: the dashboard needs pgqueue[dashboard] ({exc}): "
                "pip install 'pgqueue[dashboard]'",
                err=True,
            )
            raise typer.Exit(EXIT_USAGE) from None
        _check_database(dsn, schema)
        serve(
            dsn,
            schema=schema,
            host=host,
            port=port,
            read_only=read_only,
            token=token,
            read_dsn=read_dsn,
        )


def _check_database(dsn: str | None, schema: str | None) -> None:
    """Connect once before serving, so that a wrong DSN or password exits 3 and a missing
    schema 4, rather than a dashboard that retries a hopeless connection forever."""
    url = _db.resolve_dsn(dsn)
    with _db.connect(url, application_name="pgqueue-dashboard") as conn:
        check_schema(conn, _db.resolve_schema(schema), url)


def _resolve_token(token: str | None, token_file: Path | None) -> str | None:
    """The dashboard's token from ``--token`` (or its variable) or ``--token-file``.

    Raises :class:`ConfigurationError` when both are given, the file cannot be read, or the
    token is empty or only whitespace (which would otherwise leave every page unguarded).
    """
    if token_file is not None:
        if token is not None:
            raise ConfigurationError("give the dashboard token once: --token or --token-file")
        try:
            lines = token_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read --token-file {token_file}: {exc}") from None
        token = lines[0] if lines else ""
    if token is not None and not token.strip():
        raise ConfigurationError(
            "the dashboard token is empty: give a secret (--token, $PGQUEUE_DASHBOARD_TOKEN or "
            "--token-file), or leave it out and listen on 127.0.0.1"
        )
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""``pgqueue list/show/queue/revoke/retry/wait``: the subcommands about single tasks.

Exit statuses: those of :mod:`pgqueue._cli_common`, and for ``wait``: 0 SUCCESS, 1 FAILURE or
REVOKED, :data:`EXIT_TIMEOUT` when ``--timeout`` ran out. An unknown id exits 1, a malformed
one 2, an action that does not apply to the task's state (revoke a finished task) 1.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.panel import Panel

from . import _cli_render as render
from ._backend import TaskBackend
from ._cli_common import EXIT_FAILED, friendly_errors, setup_command_logging, split_list
from ._cli_options import (
    DsnOption,
    JsonOption,
    ReadDsnOption,
    SchemaOption,
    TaskIdArgument,
    TaskRefArgument,
    note_staleness,
    operations,
)
from ._errors import ConfigurationError, TaskTimeout
from ._format import format_seconds
from ._ops import PREVIEW_CHARS, Row, parse_duration, require_task_id
from .states import SUCCESS, RevokeResult

#: ``pgqueue wait`` gave up: the task was not finished within ``--timeout``.
EXIT_TIMEOUT = 5

_LIST_COLUMNS: list[render.Column] = [
    ("id", "id", render.text),
    ("job", "name", render.text),
    ("queue", "queue", render.text),
    ("state", "state", render.state),
    ("tries", "attempts", render.text),
    ("queued", "time_queued", render.stamp),
    ("wait", "wait_seconds", format_seconds),
    ("run", "run_seconds", format_seconds),
    ("error", "error", render.brief),
]


def list_tasks(
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="Only tasks in this state (repeat or comma-separate)."),
    ] = None,
    job: Annotated[list[str] | None, typer.Option("--job", help="Only tasks of this job.")] = None,
    queue: Annotated[
        list[str] | None, typer.Option("--queue", help="Only tasks of this queue.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only tasks changed within this long (30m, 12h, 7d).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Most tasks shown.")] = 50,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
    as_json: JsonOption = False,
    read_dsn: ReadDsnOption = None,
) -> None:
    """List tasks, most recently changed first (filters combine with AND)."""
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema, read_dsn) as ops:
        note_staleness(ops)
        rows = ops.list_tasks(
            states_=_split_all(state),
            jobs=_split_all(job),
            queues=_split_all(queue),
            since=parse_duration(since, "--since") if since else None,
            limit=limit,
        )
    if as_json:
        render.print_json(rows)
        return
    render.console.print(render.table(f"{len(rows)} tasks", rows, _LIST_COLUMNS))


def show(
    task_id: TaskRefArgument,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
    as_json: JsonOption = False,
    read_dsn: ReadDsnOption = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help=f"Show long values whole (default: the first {PREVIEW_CHARS:,} characters of "
            "kwargs, meta_params, result, error and traceback, and their length).",
        ),
    ] = False,
) -> None:
    """Show everything about one task: arguments, result, error and traceback, timestamps."""
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema, read_dsn) as ops:
        note_staleness(ops)
        task = ops.task(task_id, preview=None if full else PREVIEW_CHARS)
    if as_json:
        render.print_json(task)
        return
    _print_task(task)


def _print_task(task: Row) -> None:
    fields = [
        ("id", task["id"]),
        ("job", task["name"]),
        ("queue", task["queue"]),
        ("state", render.state(task["state"])),
        ("priority", task["priority"]),
        ("attempts", f"{task['attempts']} (max retries {task['max_retries']})"),
        ("worker", task["worker"]),
        ("lock_id", task["lock_id"]),
        ("queued", render.stamp(task["time_queued"])),
        ("run at", render.stamp(task["run_at"])),
        ("started", render.stamp(task["time_started"])),
        ("ended", render.stamp(task["time_ended"])),
        ("expiry", render.stamp(task["expiry"])),
        ("wait", format_seconds(task["wait_seconds"])),
        ("run", format_seconds(task["run_seconds"])),
        ("kwargs", json.dumps(task["kwargs"])),
        ("meta_params", json.dumps(task["meta_params"])),
        ("result", json.dumps(task["result"])),
        ("error", task["error"]),
    ]
    if task["revoke_requested_at"]:
        fields.append(("revoke asked", render.stamp(task["revoke_requested_at"])))
    for relation, rows in (("parent", task["parents"]), ("child", task["children"])):
        fields.extend((relation, f"{row['id']} {row['name']} {row['state']}") for row in rows)
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        shown = value if name == "state" else render.text(value)
        render.console.print(f"[bold]{name:<{width}}[/]  {shown}")
    if task["traceback"]:
        render.console.print(Panel(render.text(task["traceback"].rstrip()), title="traceback"))


def queue(
    job: Annotated[str, typer.Argument(help="Job name.")],
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[KEY=VALUE]...",
            help="Job arguments; each VALUE is read as JSON when it parses (1, true, [1,2], "
            '{"a":1}, "quoted"), else taken as a string.',
        ),
    ] = None,
    task_paths: Annotated[
        str,
        typer.Option(
            "--task-paths",
            envvar="PGQUEUE_TASK_PATHS",
            help="Comma-separated modules that define the jobs (as for pgqueue-worker).",
        ),
    ] = "",
    queue_name: Annotated[
        str | None, typer.Option("--queue", help="Queue (default: the job's, else tasks).")
    ] = None,
    priority: Annotated[int | None, typer.Option(help="Priority (higher runs first).")] = None,
    countdown: Annotated[
        str | None, typer.Option(help="Run no sooner than this from now (90s, 5m).")
    ] = None,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a task from the shell and print its id."""
    setup_command_logging()
    sys.path.insert(0, "")  # jobs in the current directory, as pgqueue-worker finds them
    with friendly_errors():
        if not split_list(task_paths):
            raise ConfigurationError(
                "pass --task-paths (or set PGQUEUE_TASK_PATHS) naming the modules that define "
                f"job {job!r}, as for pgqueue-worker"
            )
        kwargs = parse_arguments(arguments or [])
        delay = parse_duration(countdown, "--countdown") if countdown else None
        with TaskBackend(dsn, split_list(task_paths), schema=schema, pool_size=1) as backend:
            task_id = backend.queue_task(
                job, queue=queue_name, priority=priority, countdown=delay, **kwargs
            )
    if as_json:
        render.print_json({"id": task_id, "queued": task_id is not None})
    elif task_id is not None:
        print(task_id)
    if task_id is None:
        typer.echo(
            f"error: not queued: job {job!r} cannot overlap and a live task with the same "
            "arguments exists (see `pgqueue list --job " + job + "`)",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED)


def parse_arguments(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "name=bob", "tags=[1,2]"]`` -> ``{"a": 1, "name": "bob", "tags": [1, 2]}``.

    Raises :class:`ConfigurationError` for a pair without ``=``, an empty or repeated key.
    """
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigurationError(
                f"job argument {pair!r} must be KEY=VALUE with KEY a Python identifier"
            )
        if key in kwargs:
            raise ConfigurationError(f"job argument {key!r} is given twice")
        try:
            kwargs[key] = json.loads(raw)
        except ValueError:
            kwargs[key] = raw
    return kwargs


def revoke(
    task_id: TaskRefArgument,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
) -> None:
    """Revoke a task: a waiting one never runs; a running one is told to stop."""
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema) as ops:
        task = ops.revoke(task_id)
    if task["revoke"] == RevokeResult.STOP_REQUESTED.value:
        render.console.print(
            f"task {task['id']} ({task['name']}) was running: its worker was told to stop it; "
            f"it ends {render.state('REVOKED')} if the job stops (a job that returns normally "
            f"all the same ends {render.state('SUCCESS')}); now {render.state(task['state'])}"
        )
    else:
        render.console.print(f"task {task['id']} ({task['name']}) is {render.state('REVOKED')}")


def retry(
    task_id: TaskRefArgument,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
) -> None:
    """Run a FAILURE or REVOKED task again: it goes back to QUEUED, due now."""
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema) as ops:
        task = ops.retry(task_id)
    render.console.print(f"task {task['id']} ({task['name']}) is {render.state('QUEUED')} again")


def wait(
    task_id: TaskIdArgument,
    timeout: Annotated[
        str | None, typer.Option(help="Give up after this long (30s, 5m); default: never.")
    ] = None,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
    as_json: JsonOption = False,
) -> None:
    """Wait until a task has finished; exit 0 on SUCCESS, 1 on FAILURE or REVOKED,
    5 when --timeout runs out."""
    setup_command_logging()
    with friendly_errors():
        task_id = require_task_id(task_id)
        seconds = parse_duration(timeout, "--timeout") if timeout else None
        with TaskBackend(dsn, schema=schema, pool_size=1) as backend:
            try:
                task = backend.wait_for_task(task_id, timeout=seconds)
            except TaskTimeout as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(EXIT_TIMEOUT) from None
    if as_json:
        render.print_json(task.as_dict())
    else:
        line = f"task {task.id} ({task.name}) {render.state(task.status_string())}"
        render.console.print(line + (f": {render.text(task.error)}" if task.error else ""))
    if task.status != SUCCESS:
        raise typer.Exit(EXIT_FAILED)


def _split_all(values: list[str] | None) -> list[str]:
    return [part for value in values or [] for part in split_list(value)]

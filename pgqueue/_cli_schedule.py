"""``pgqueue schedule``: each periodic job with its last and next tick; ``pgqueue schedule
pause/resume/trigger NAME``: an operator's actions on one schedule (audited)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import _cli_render as render
from ._backend import TaskBackend
from ._cli_common import EXIT_FAILED, friendly_errors, setup_command_logging
from ._cli_options import DsnOption, JsonOption, SchemaOption, operations
from ._format import format_seconds

_SCHEDULE_COLUMNS: list[render.Column] = [
    ("job", "name", render.text),
    ("schedule", "schedule", render.text),
    ("missed", "missed", render.text),
    ("paused since", "paused_at", render.stamp),
    ("last tick", "last_tick", render.stamp),
    ("next tick", "next_tick", render.stamp),
    ("due in", "due_in", format_seconds),
    ("runs", "runs_count", render.text),
    ("skipped", "skipped_count", render.text),
    ("last outcome", "last_outcome", render.text),
    ("last task", "last_task_state", render.state),
]

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Periodic job name.")]

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def schedule(
    ctx: typer.Context,
    dsn: DsnOption = None,
    schema: SchemaOption = None,
    as_json: JsonOption = False,
) -> None:
    """Periodic jobs: schedule, paused, last and next tick (UTC), runs and skipped ticks.

    A job appears once a worker started with --schedule-periodic has defined it. "due in" is
    negative while a due tick waits for a scheduler. Subcommands pause, resume or trigger one.
    """
    if ctx.invoked_subcommand is not None:
        return
    setup_command_logging()
    with friendly_errors(), TaskBackend(dsn, schema=schema, pool_size=1) as backend:
        rows = backend.schedules()
    if as_json:
        render.print_json(rows)
        return
    render.console.print(render.table(f"{len(rows)} periodic jobs", rows, _SCHEDULE_COLUMNS))


@app.command()
def pause(name: NameArgument, dsn: DsnOption = None, schema: SchemaOption = None) -> None:
    """Pause a schedule on every scheduler until `pgqueue schedule resume NAME`.

    Its ticks queue nothing meanwhile: they count as skipped and are not caught up on resume.
    """
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema) as ops:
        row = ops.pause_schedule(name)
    render.console.print(f"schedule {name!r} is paused (since {render.stamp(row['paused_at'])})")


@app.command()
def resume(name: NameArgument, dsn: DsnOption = None, schema: SchemaOption = None) -> None:
    """Resume a paused schedule: its next tick queues a task again."""
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema) as ops:
        ops.resume_schedule(name)
    render.console.print(f"schedule {name!r} resumed")


@app.command()
def trigger(name: NameArgument, dsn: DsnOption = None, schema: SchemaOption = None) -> None:
    """Queue one run of a periodic job now, as a tick would (paused or not).

    The task is queued at once, with the job's queue and options as the schedule stores them:
    any worker consuming that queue runs it, with or without --schedule-periodic. A job that
    cannot overlap gets no second task while its previous one is live (exit status 1).
    """
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema) as ops:
        row = ops.trigger_schedule(name)
    paused = " (the schedule stays paused)" if row["paused_at"] else ""
    if row["queued"]:
        render.console.print(
            f"run of {name!r} queued as task {row['task_id']} on queue {row['queue']!r}{paused}"
        )
    elif row["trigger_requested_at"] is not None:
        render.console.print(
            f"run of {name!r} requested at {render.stamp(row['trigger_requested_at'])}: the "
            "schedule was stored by an older scheduler, so the next round of a worker with "
            f"--schedule-periodic queues it{paused}"
        )
    else:
        render.console.print(
            f"run of {name!r} not queued: the job cannot overlap and its previous task is "
            "still live (queued or running)"
        )
        raise typer.Exit(EXIT_FAILED)

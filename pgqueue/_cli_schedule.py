"""``pgqueue schedule``: each periodic job with its last and next tick."""

from __future__ import annotations

from . import _cli_render as render
from ._cli_common import friendly_errors, setup_command_logging
from ._cli_options import DsnOption, JsonOption, SchemaOption
from ._format import format_seconds
from .backend import TaskBackend

_SCHEDULE_COLUMNS: list[render.Column] = [
    ("job", "name", render.text),
    ("schedule", "schedule", render.text),
    ("missed", "missed", render.text),
    ("last tick", "last_tick", render.stamp),
    ("next tick", "next_tick", render.stamp),
    ("due in", "due_in", format_seconds),
    ("runs", "runs_count", render.text),
    ("skipped", "skipped_count", render.text),
    ("last outcome", "last_outcome", render.text),
    ("last task", "last_task_state", render.state),
]


def schedule(
    dsn: DsnOption = None, schema: SchemaOption = None, as_json: JsonOption = False
) -> None:
    """Periodic jobs: schedule, last and next tick (UTC), runs and skipped ticks.

    A job appears once a worker started with --schedule-periodic has defined it. "due in" is
    negative while a due tick waits for a scheduler.
    """
    setup_command_logging()
    with friendly_errors(), TaskBackend(dsn, schema=schema, pool_size=1) as backend:
        rows = backend.schedules()
    if as_json:
        render.print_json(rows)
        return
    render.console.print(render.table(f"{len(rows)} periodic jobs", rows, _SCHEDULE_COLUMNS))

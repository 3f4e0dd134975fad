"""``pgqueue pause/resume``: flow control of queues, for every worker at once."""

from __future__ import annotations

from typing import Annotated

import typer

from . import _cli_render as render
from ._cli_common import friendly_errors, setup_command_logging
from ._cli_options import DsnOption, SchemaOption, operations

QueueArgument = Annotated[str, typer.Argument(metavar="QUEUE", help="Queue name.")]


def pause(queue: QueueArgument, dsn: DsnOption = None, schema: SchemaOption = None) -> None:
    """Pause a queue on every worker: nothing more starts from it; running tasks finish."""
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema) as ops:
        since = ops.backend.pause_queue(queue)
    render.console.print(f"queue {queue!r} is paused (since {render.stamp(since)})")


def resume(queue: QueueArgument, dsn: DsnOption = None, schema: SchemaOption = None) -> None:
    """Resume a paused queue: its workers are woken and claim at once."""
    setup_command_logging()
    with friendly_errors(), operations(dsn, schema) as ops:
        was_paused = ops.backend.resume_queue(queue)
    render.console.print(
        f"queue {queue!r} resumed" if was_paused else f"queue {queue!r} was not paused"
    )

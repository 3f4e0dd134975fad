"""``pgqueue-worker``: run a worker process from the command line."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from ._cli_common import friendly_errors, setup_logging, split_list
from .worker import Worker

app = typer.Typer(add_completion=False)


@app.command()
def worker(
    task_paths: Annotated[
        str, typer.Option("--task-paths", help="Comma-separated modules that define the jobs.")
    ],
    dsn: Annotated[
        str | None,
        typer.Option(envvar="PGQUEUE_DSN", help="PostgreSQL DSN (default $PGQUEUE_DSN)."),
    ] = None,
    name: Annotated[str, typer.Option(help="Default queue (pulsar's backend name).")] = "tasks",
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues to claim from (default: --name).")
    ] = None,
    backlog: Annotated[int, typer.Option(min=1, help="Tasks run at once.")] = 4,
    max_tasks: Annotated[
        int, typer.Option(min=0, help="Exit 0 after starting this many tasks (0: never).")
    ] = 0,
    poll_timeout: Annotated[
        float, typer.Option(min=0.01, help="Seconds between polls when no notification comes.")
    ] = 2.0,
    burst: Annotated[bool, typer.Option(help="Exit 0 once nothing is left to claim.")] = False,
    lease: Annotated[
        float, typer.Option(min=0.1, help="Seconds without heartbeat before tasks are rescued.")
    ] = 30.0,
    schema: Annotated[
        str | None, typer.Option(envvar="PGQUEUE_SCHEMA", help="Schema of pgqueue's tables.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Claim and run tasks from a pgqueue database until stopped (SIGTERM or Ctrl-C)."""
    setup_logging(log_level)
    sys.path.insert(0, "")  # jobs in the current directory, as `python -m` would find them
    with friendly_errors():
        runner = Worker(
            dsn,
            split_list(task_paths),
            name,
            queues=split_list(queues) or None,
            backlog=backlog,
            max_tasks=max_tasks,
            poll_timeout=poll_timeout,
            burst=burst,
            lease=lease,
            schema=schema,
        )

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            runner.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        code = runner.run()
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()

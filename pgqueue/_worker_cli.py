"""``pgqueue-worker``: run a worker process from the command line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from . import _db
from ._cli_common import (
    EXIT_OK,
    VersionOption,
    friendly_errors,
    log_format_name,
    log_level_name,
    run_app,
    setup_logging,
    split_list,
)
from ._exits import EXIT_RECYCLE
from ._jobs import JobRegistry
from ._signals import StopSignals
from ._supervisor import Supervisor, supervised, watch_supervisor
from ._values import parse_duration
from .worker import Worker
from .worker.activity import SUMMARY_EVERY, SUMMARY_EVERY_MAX
from .worker.options import DEFAULT_BACKLOG

app = typer.Typer(add_completion=False)


@app.command()
def worker(
    task_paths: Annotated[
        str,
        typer.Option(
            "--task-paths",
            envvar="PGQUEUE_TASK_PATHS",
            help="Comma-separated modules that define the jobs.",
        ),
    ],
    dsn: Annotated[
        str | None,
        typer.Option(envvar="PGQUEUE_DSN", help="PostgreSQL DSN (default $PGQUEUE_DSN)."),
    ] = None,
    read_dsn: Annotated[
        str | None,
        typer.Option(
            envvar="PGQUEUE_READ_DSN",
            help="DSN of a streaming standby the metrics read queue depth and age from.",
        ),
    ] = None,
    listen_dsn: Annotated[
        str | None,
        typer.Option(
            envvar="PGQUEUE_LISTEN_DSN",
            help="DSN straight to PostgreSQL for LISTEN when --dsn goes through a transaction "
            "pooler (PgBouncer); without it such a worker polls.",
        ),
    ] = None,
    name: Annotated[
        str, typer.Option(envvar="PGQUEUE_NAME", help="Default queue (pulsar's backend name).")
    ] = "tasks",
    queues: Annotated[
        str | None,
        typer.Option(
            envvar="PGQUEUE_QUEUES", help="Comma-separated queues to claim from (default: --name)."
        ),
    ] = None,
    backlog: Annotated[
        int, typer.Option(envvar="PGQUEUE_BACKLOG", min=1, help="Tasks run at once.")
    ] = DEFAULT_BACKLOG,
    max_tasks: Annotated[
        int,
        typer.Option(
            envvar="PGQUEUE_MAX_TASKS",
            min=0,
            help="Exit 0 after starting this many tasks (0: never).",
        ),
    ] = 0,
    poll_timeout: Annotated[
        float,
        typer.Option(
            envvar="PGQUEUE_POLL_TIMEOUT",
            min=0.01,
            help="Seconds between polls when no notification comes.",
        ),
    ] = 2.0,
    burst: Annotated[
        bool, typer.Option(envvar="PGQUEUE_BURST", help="Exit 0 once nothing is left to claim.")
    ] = False,
    queue_order: Annotated[
        str,
        typer.Option(
            envvar="PGQUEUE_QUEUE_ORDER",
            help="With several --queues: strict (priority then age across all queues) or "
            "fair (the queues take turns, so one queue's backlog never holds back another's).",
        ),
    ] = "strict",
    lease: Annotated[
        float,
        typer.Option(
            envvar="PGQUEUE_LEASE",
            min=0.1,
            help="Seconds without heartbeat before tasks are rescued.",
        ),
    ] = 30.0,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            envvar="PGQUEUE_SHUTDOWN_TIMEOUT",
            min=0,
            help="On SIGTERM/Ctrl-C, seconds to let running tasks finish before giving them "
            "back to the queue (a second signal gives them back at once).",
        ),
    ] = 30.0,
    hard_time_limits: Annotated[
        bool,
        typer.Option(
            envvar="PGQUEUE_HARD_TIME_LIMITS",
            help="With --processes: a thread job still running 1 s past its time_limit fails "
            "at once and its worker process is replaced, killing the job's thread.",
        ),
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            envvar="PGQUEUE_PROCESSES",
            min=0,
            help="Run this many worker processes under a supervisor that replaces any that "
            "exits (0: one worker in this process).",
        ),
    ] = 0,
    schema: Annotated[
        str | None, typer.Option(envvar="PGQUEUE_SCHEMA", help="Schema of pgqueue's tables.")
    ] = None,
    schedule_periodic: Annotated[
        bool,
        typer.Option(
            "--schedule-periodic",
            envvar="PGQUEUE_SCHEDULE_PERIODIC",
            help="Also queue the periodic jobs at their ticks (safe on any number of workers).",
        ),
    ] = False,
    prune_after: Annotated[
        str | None,
        typer.Option(
            envvar="PGQUEUE_PRUNE_AFTER",
            help="Also delete tasks that finished longer ago than this (7d, 12h), in small "
            "batches every minute, on one more connection (default: keep them).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="PGQUEUE_METRICS_PORT",
            min=1,
            max=65535,
            help="Serve Prometheus metrics on this port.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(envvar="PGQUEUE_METRICS_HOST", help="Address of the metrics server.")
    ] = "127.0.0.1",
    log_level: Annotated[
        str,
        typer.Option(
            envvar="PGQUEUE_LOG_LEVEL",
            help="DEBUG, INFO, WARNING or ERROR. INFO: a summary line every "
            "--log-summary-every seconds, a line per retry and failure; DEBUG: a line per task "
            "start and success too.",
            callback=log_level_name,
        ),
    ] = "INFO",
    log_summary_every: Annotated[
        float,
        typer.Option(
            envvar="PGQUEUE_LOG_SUMMARY_EVERY",
            min=0.1,
            max=SUMMARY_EVERY_MAX,
            help="Seconds between two INFO lines summing up the tasks that ended.",
        ),
    ] = SUMMARY_EVERY,
    log_format: Annotated[
        str,
        typer.Option(
            envvar="PGQUEUE_LOG_FORMAT",
            help="text (one line per record) or json (one JSON object per line, with the "
            "task's id, job, queue, attempt, worker and duration).",
            callback=log_format_name,
        ),
    ] = "text",
    version: VersionOption = False,
) -> None:
    """Claim and run tasks from a pgqueue database until stopped (SIGTERM or Ctrl-C)."""
    given = {"--dsn": dsn, "--read-dsn": read_dsn, "--listen-dsn": listen_dsn}
    if without_options(sys.argv[1:], *DSN_OPTIONS) != sys.argv[1:]:
        restart_without_dsn_arguments({o: v for o, v in given.items() if v is not None})
    setup_logging(log_level, log_format)
    sys.path.insert(0, "")  # jobs in the current directory, as `python -m` would find them
    # Stop signals are caught from here on, each one counted, and kept from the process once
    # it is on its way out (a late Ctrl-C must not raise, a late SIGTERM not change the exit
    # status); those received before the worker exists are passed on to it when it does.
    with StopSignals(restore=False) as signals, friendly_errors():
        if processes:
            env = dict(os.environ, PGQUEUE_DSN=_db.resolve_dsn(dsn))
            env.update({"PGQUEUE_READ_DSN": read_dsn} if read_dsn else {})
            env.update({"PGQUEUE_LISTEN_DSN": listen_dsn} if listen_dsn else {})
            env.pop("PGQUEUE_PROCESSES", None)  # each child runs one worker
            supervisor = Supervisor(
                [sys.executable, "-m", "pgqueue._worker_cli", *child_args(sys.argv[1:])],
                processes,
                env=env,
                burst=burst,
            )
            signals.connect(supervisor.stop)
            raise typer.Exit(supervisor.run())
        runner = Worker(
            dsn,
            split_list(task_paths),
            name,
            queues=split_list(queues) or None,
            backlog=backlog,
            max_tasks=max_tasks,
            poll_timeout=poll_timeout,
            burst=burst,
            queue_order=queue_order,
            lease=lease,
            shutdown_timeout=shutdown_timeout,
            hard_time_limits=hard_time_limits,
            schema=schema,
            schedule_periodic=schedule_periodic,
            prune_after=parse_duration(prune_after, "--prune-after") if prune_after else None,
            listen_dsn=listen_dsn,
            log_summary_every=log_summary_every,
        )

        if schedule_periodic:
            warn_unconsumed_ticks(runner.registry, name, runner.queues)

        watch_supervisor(runner.stop)  # a child whose supervisor was killed stops too
        if metrics_port:
            from ._metrics import serve_metrics  # the metrics extra, needed only here

            serve_metrics(runner, metrics_port, metrics_host, read_dsn=read_dsn)
        signals.connect(runner.stop)
        code = runner.run()
        if code == EXIT_OK and max_tasks and runner.processed >= max_tasks and supervised():
            code = EXIT_RECYCLE  # the supervisor replaces it, with --burst too
    if runner.jobs_still_running:  # given back: end their threads with the process
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def warn_unconsumed_ticks(registry: JobRegistry, default_queue: str, queues: Sequence[str]) -> None:
    """With ``--schedule-periodic``: log one warning at start-up naming the periodic jobs whose
    ticks go to a queue this worker does not claim from (the job's ``queue``, else
    ``--name``), since they wait there until some worker consumes that queue."""
    elsewhere = [
        f"{job_name} (queue {job.queue or default_queue})"
        for job_name, job in registry.filter_types("periodic")
        if (job.queue or default_queue) not in queues
    ]
    if elsewhere:
        logging.getLogger("pgqueue.worker").warning(
            "--schedule-periodic queues ticks of %s, but this worker claims only from %s: "
            "run a worker with --queues for them",
            ", ".join(elsewhere),
            ", ".join(queues),
        )


#: The options that carry a DSN (and so perhaps a password), with the environment variable
#: each is handed over in instead.
DSN_OPTIONS = {
    "--dsn": "PGQUEUE_DSN",
    "--read-dsn": "PGQUEUE_READ_DSN",
    "--listen-dsn": "PGQUEUE_LISTEN_DSN",
}


def restart_without_dsn_arguments(given: dict[str, str]) -> None:
    """Replace this process (same pid, :func:`os.execve`) by the same worker with every DSN
    option of :data:`DSN_OPTIONS` moved to its environment variable, so no password shows in
    ``ps`` or ``/proc/<pid>/cmdline`` while the worker runs. ``given``: option to value.
    Returns only if the exec fails (logged)."""
    argv = [
        sys.executable,
        "-m",
        "pgqueue._worker_cli",
        *without_options(sys.argv[1:], *DSN_OPTIONS),
    ]
    env = dict(os.environ, **{DSN_OPTIONS[option]: value for option, value in given.items()})
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError as exc:
        logging.getLogger("pgqueue.worker").warning(
            "could not restart without %s on the command line (%s): set %s instead, or the "
            "password shows in ps",
            "/".join(given),
            exc,
            "/".join(DSN_OPTIONS[option] for option in given),
        )


def without_options(argv: Sequence[str], *options: str) -> list[str]:
    """``argv`` minus the given options and their values (``--opt V`` and ``--opt=V``)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in options)):
            out.append(arg)
    return out


def child_args(argv: Sequence[str]) -> list[str]:
    """The supervisor's command line minus ``--processes`` (children run one worker each)
    and the DSN options (handed over in the environment, so no password shows in ``ps``)."""
    return without_options(argv, "--processes", *DSN_OPTIONS)


def main() -> None:
    """Console-script entry point."""
    run_app(app)


if __name__ == "__main__":
    main()

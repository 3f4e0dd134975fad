"""The summary ``pgqueue demo`` prints: read with SQL from the task table, shown with rich."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from ._store import Store

#: How many of the longest files the summary lists.
LARGEST = 10


@dataclass(frozen=True)
class Summary:
    """What one demo run did, as the task table of its queue records it.

    ``states`` maps every state name to its task count. ``lines``, ``bytes`` and
    ``definitions`` add up the results of the SUCCESS tasks. ``wall_seconds`` runs from the
    first task queued to the last one ended, ``run_seconds`` from the first start to the last
    end (both by the database clock; None before any task ended); ``files_per_second`` is
    finished tasks / ``run_seconds``. ``workers`` maps each worker id to the tasks it ran;
    ``largest`` holds rows ``{path, lines, bytes, definitions}``, longest first; ``failures``
    holds rows ``{path, state, error}`` for FAILURE and REVOKED tasks, by path.
    """

    states: dict[str, int]
    tasks: int
    finished: int
    lines: int
    bytes: int
    definitions: int
    wall_seconds: float | None
    run_seconds: float | None
    files_per_second: float | None
    workers: dict[str, int]
    largest: list[dict[str, Any]]
    failures: list[dict[str, Any]]


def read_summary(conn: psycopg.Connection[dict[str, Any]], store: Store, queue: str) -> Summary:
    """Compute the :class:`Summary` of ``queue`` with SQL on the task table."""
    states = store.demo_states(queue=queue).run(conn)
    totals = store.demo_totals(queue=queue).run(conn)
    assert totals is not None  # an aggregate always returns one row
    workers = store.demo_workers(queue=queue).run(conn)
    return Summary(
        states=states,
        tasks=totals["tasks"],
        finished=totals["finished"],
        lines=int(totals["lines"]),
        bytes=int(totals["bytes"]),
        definitions=int(totals["definitions"]),
        wall_seconds=totals["wall_seconds"],
        run_seconds=totals["run_seconds"],
        files_per_second=totals["files_per_second"],
        workers=workers,
        largest=store.demo_largest(queue=queue, limit=LARGEST).run(conn),
        failures=store.demo_failures(queue=queue).run(conn),
    )


def _relative(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def render_summary(summary: Summary, console: Console, root: str) -> None:
    """Print ``summary`` as tables; paths under ``root`` are shown relative to it."""
    totals = Table(title="Summary (SQL on the task table)", show_header=False)
    totals.add_column(style="bold")
    totals.add_column(justify="right")
    for state, count in summary.states.items():
        if count:
            totals.add_row(state, f"{count:,}")
    totals.add_row("files", f"{summary.tasks:,}")
    totals.add_row("lines read", f"{summary.lines:,}")
    totals.add_row("bytes read", f"{summary.bytes:,}")
    totals.add_row("top-level definitions", f"{summary.definitions:,}")
    totals.add_row("worker processes", f"{len(summary.workers)}")
    totals.add_row("wall time (first queued -> last ended)", _seconds(summary.wall_seconds))
    totals.add_row("run time (first started -> last ended)", _seconds(summary.run_seconds))
    rate = summary.files_per_second
    totals.add_row("files per second", "-" if rate is None else f"{rate:,.0f}")
    console.print(totals, soft_wrap=False)

    workers = Table(title="Tasks per worker process")
    workers.add_column("worker (host:pid:id)")
    workers.add_column("tasks", justify="right")
    for worker, count in summary.workers.items():
        workers.add_row(worker, f"{count:,}")
    console.print(workers, soft_wrap=False)

    largest = Table(title=f"Largest files (under {root})")
    for name in ("path", "lines", "bytes", "definitions"):
        largest.add_column(name, justify="left" if name == "path" else "right")
    for row in summary.largest:
        largest.add_row(
            _relative(row["path"], root),
            f"{row['lines']:,}",
            f"{row['bytes']:,}",
            f"{row['definitions']:,}",
        )
    console.print(largest, soft_wrap=False)

    if summary.failures:
        failures = Table(title="Files that did not succeed", show_lines=False)
        failures.add_column("path")
        failures.add_column("state")
        failures.add_column("reason", overflow="fold")
        for row in summary.failures:
            failures.add_row(_relative(row["path"], root), row["state"], row["error"] or "")
        console.print(failures, soft_wrap=False)

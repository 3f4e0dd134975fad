"""Enqueue rates: one task per call against bulk ``queue_tasks``, on one fresh database.

    python benchmarks/bulk_enqueue.py                      # embedded throwaway PostgreSQL
    python benchmarks/bulk_enqueue.py --dsn postgresql://postgres@localhost/postgres

Each line is the median of ``--repeat`` runs of ``--count`` tasks; the table is deleted
between runs. "one per call" commits each task (autocommit pool); "one per call, one
transaction" passes a caller's psycopg connection and commits once at the end; "bulk" sends
``--count`` tasks in batches of the size shown, each batch one statement; "bulk, lock_id"
is the same for a job that cannot overlap (every task hashes its lock_id and checks the
unique index); "async" awaits ``aqueue_task`` with 20 coroutines at a time.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pgqueue
from benchmarks.common import Server
from pgqueue._db import connect
from pgqueue._schema import migrate

registry = pgqueue.JobRegistry(
    [
        pgqueue.job(name="noop")(lambda consumer, **kwargs: None),
        pgqueue.job(name="unique", can_overlap=False)(lambda consumer, **kwargs: None),
    ]
)


def measure(dsn: str, count: int, repeat: int, work: Callable[[], None]) -> float:
    """Median tasks/s of ``work`` (which queues ``count`` tasks) over ``repeat`` runs."""
    rates = []
    for _ in range(repeat):
        with connect(dsn) as conn:
            conn.execute("TRUNCATE pgqueue.task")
        started = time.perf_counter()
        work()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def main(
    dsn: Annotated[str | None, typer.Option(help="Server to use (default: embedded).")] = None,
    count: Annotated[int, typer.Option(help="Tasks per run.")] = 10_000,
    repeat: Annotated[int, typer.Option(help="Runs per figure (median shown).")] = 3,
) -> None:
    """Print enqueue rates, one at a time and in bulk."""
    server = Server(dsn)
    try:
        db = server.fresh_database("pgqueue_bench_bulk")
        migrate(db, "pgqueue")
        backend = pgqueue.TaskBackend(db, registry=registry)
        backend.queue_task("noop")  # open the pool: connecting is not enqueueing

        def one_per_call() -> None:
            for n in range(count):
                backend.queue_task("noop", n=n)

        def one_transaction() -> None:
            with connect(db, autocommit=False) as conn:
                for n in range(count):
                    backend.queue_task("noop", n=n, connection=conn)
                conn.commit()

        def bulk(job: str, size: int) -> Callable[[], None]:
            def run() -> None:
                for start in range(0, count, size):
                    stop = min(start + size, count)
                    backend.queue_tasks(job, [{"n": n} for n in range(start, stop)])

            return run

        def concurrent() -> None:
            async def go() -> None:
                for start in range(0, count, 20):
                    stop = min(start + 20, count)
                    await asyncio.gather(
                        *(backend.aqueue_task("noop", n=n) for n in range(start, stop))
                    )
                await backend.aclose()

            asyncio.run(go())

        cases: list[tuple[str, Callable[[], None]]] = [
            ("one per call (autocommit)", one_per_call),
            ("one per call, one transaction", one_transaction),
            ("async aqueue_task, 20 at a time", concurrent),
            *[(f"bulk, batches of {size}", bulk("noop", size)) for size in (100, 1000, 10_000)],
            ("bulk, lock_id, batches of 1000", bulk("unique", 1000)),
        ]
        table = Table(title=f"pgqueue enqueue, {count} tasks, median of {repeat}")
        table.add_column("how")
        table.add_column("tasks/s", justify="right")
        for name, work in cases:
            table.add_row(name, f"{measure(db, count, repeat, work):,.0f}")
        backend.close()
        info = server.describe()
        Console().print(table)
        Console().print(", ".join(f"{k}={v}" for k, v in info.items()))
    finally:
        server.close()


if __name__ == "__main__":
    typer.run(main)

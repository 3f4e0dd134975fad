"""procrastinate's figures: ``defer_async``, ``batch_defer_async``, ``run_worker_async``.

Worker settings: ``concurrency=20``, LISTEN/NOTIFY on (its default), finished jobs kept
(``delete_jobs="never"``, its default), async no-op tasks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .common import PickupWorker, Row, Sizes, analyze, rate, timer

CONCURRENCY = 20


def make_app(dsn: str) -> Any:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        pass

    @app.task(name="pickup")
    async def pickup(key: str) -> None:
        print(f"STARTED {key} {time.time()!r}", flush=True)

    return app


async def _run(dsn: str, sizes: Sizes, row: Row) -> None:
    app = make_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        noop = app.tasks["noop"]
        with timer() as elapsed:
            for _ in range(sizes.single):
                await noop.defer_async()
        row.enqueue_one.append(rate(sizes.single, elapsed()))
        await app.connector.execute_query_async("DELETE FROM procrastinate_jobs")
        with timer() as elapsed:
            for start in range(0, sizes.jobs, sizes.batch):
                size = min(sizes.batch, sizes.jobs - start)
                await noop.batch_defer_async(*([{}] * size))
        row.enqueue_bulk.append(rate(sizes.jobs, elapsed()))
        analyze(dsn)
        with timer() as elapsed:
            await app.run_worker_async(
                concurrency=CONCURRENCY, wait=False, install_signal_handlers=False
            )
        row.drain.append(rate(sizes.jobs, elapsed()))
        left = await app.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE status <> 'succeeded'"
        )
        if left["n"]:
            raise RuntimeError(f"procrastinate drain left {left['n']} jobs unfinished")

        worker = PickupWorker("procrastinate", dsn)
        loop = asyncio.get_running_loop()
        pickup = app.tasks["pickup"]

        def enqueue(key: str) -> None:
            asyncio.run_coroutine_threadsafe(pickup.defer_async(key=key), loop).result()

        try:
            row.pickup += await asyncio.to_thread(worker.measure, enqueue, sizes.samples)
        finally:
            worker.close()


async def pickup_worker(dsn: str) -> None:
    """Runs in the pickup subprocess: an idle worker printing when each job starts."""
    app = make_app(dsn)
    async with app.open_async():
        await app.run_worker_async(concurrency=CONCURRENCY, install_signal_handlers=False)


def run(dsn: str, sizes: Sizes, row: Row) -> None:
    """One run of every procrastinate measurement on the fresh database ``dsn``."""
    asyncio.run(_run(dsn, sizes, row))

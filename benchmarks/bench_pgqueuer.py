"""pgqueuer's figures, through its asyncpg driver or its psycopg driver.

Worker settings: ``batch_size=10`` (its default) and ``max_concurrent_tasks=20``, the
concurrency every system gets; async no-op entrypoints; schema from ``Queries.install``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from .common import PickupWorker, Row, Sizes, analyze, rate, timer

CONCURRENCY = 20
BATCH = 10


@asynccontextmanager
async def driver(dsn: str, kind: str) -> AsyncIterator[Any]:
    """A pgqueuer driver on one new connection (``kind``: asyncpg or psycopg)."""
    if kind == "asyncpg":
        import asyncpg
        from pgqueuer import AsyncpgDriver

        params = conninfo_to_dict(dsn)
        conn = await asyncpg.connect(
            host=params.get("host"),
            port=params.get("port"),
            user=params.get("user"),
            password=params.get("password"),
            database=params.get("dbname"),
        )
        try:
            yield AsyncpgDriver(conn)
        finally:
            await conn.close()
    else:
        import psycopg
        from pgqueuer import PsycopgDriver

        aconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            yield PsycopgDriver(aconn)
        finally:
            await aconn.close()


async def _drain(dsn: str, kind: str, count: int) -> float:
    from pgqueuer import QueueManager
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    analyze(dsn)
    async with driver(dsn, kind) as drv:
        qm = QueueManager(Queries(drv))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            pass

        with timer() as elapsed:
            await qm.run(
                mode=QueueExecutionMode.drain,
                batch_size=BATCH,
                max_concurrent_tasks=CONCURRENCY,
            )
        left = await drv.fetch("SELECT count(*) AS n FROM pgqueuer")
    if left[0]["n"]:
        raise RuntimeError(f"pgqueuer drain left {left[0]['n']} jobs queued")
    return rate(count, elapsed())


async def _enqueue(dsn: str, kind: str, sizes: Sizes, row: Row) -> None:
    from pgqueuer.queries import Queries

    async with driver(dsn, kind) as drv:
        queries = Queries(drv)
        await queries.install()
        with timer() as elapsed:
            for _ in range(sizes.single):
                await queries.enqueue("noop", None)
        row.enqueue_one.append(rate(sizes.single, elapsed()))
        await queries.clear_queue()
        with timer() as elapsed:
            for start in range(0, sizes.jobs, sizes.batch):
                size = min(sizes.batch, sizes.jobs - start)
                await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        row.enqueue_bulk.append(rate(sizes.jobs, elapsed()))


async def _pickup(dsn: str, kind: str, samples: int) -> list[float]:
    from pgqueuer.queries import Queries

    worker = PickupWorker(f"pgqueuer-{kind}", dsn)
    try:
        async with driver(dsn, kind) as drv:
            queries = Queries(drv)
            loop = asyncio.get_running_loop()

            def enqueue(key: str) -> None:
                asyncio.run_coroutine_threadsafe(
                    queries.enqueue("pickup", key.encode()), loop
                ).result()

            return await asyncio.to_thread(worker.measure, enqueue, samples)
    finally:
        worker.close()


async def pickup_worker(dsn: str, kind: str) -> None:
    """Runs in the pickup subprocess: an idle worker printing when each job starts."""
    from pgqueuer import QueueManager
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries

    async with driver(dsn, kind) as drv:
        qm = QueueManager(Queries(drv))

        @qm.entrypoint("pickup")
        async def pickup(job: Job) -> None:
            print(f"STARTED {(job.payload or b'').decode()} {time.time()!r}", flush=True)

        await qm.run(batch_size=BATCH, max_concurrent_tasks=CONCURRENCY)


def run(dsn: str, kind: str, sizes: Sizes, row: Row) -> None:
    """One run of every pgqueuer measurement (driver ``kind``) on the fresh database ``dsn``."""
    asyncio.run(_enqueue(dsn, kind, sizes, row))
    row.drain.append(asyncio.run(_drain(dsn, kind, sizes.jobs)))
    row.pickup += asyncio.run(_pickup(dsn, kind, sizes.samples))

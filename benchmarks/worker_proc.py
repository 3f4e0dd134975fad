"""A worker in its own process for the pickup-latency measurement.

``python -m benchmarks.worker_proc SYSTEM DSN`` starts an idle, listening worker of
``SYSTEM`` (pgqueue, pgqueuer-asyncpg, pgqueuer-psycopg, procrastinate) with a job
``pickup(key)`` that prints ``STARTED <key> <unix time>`` as soon as it starts. It prints
``READY`` first and runs until terminated. ``pgqueue-burst`` drains the queue and exits
(for the memory measurement).
"""

from __future__ import annotations

import asyncio
import sys


def main(system: str, dsn: str) -> None:
    print("READY", flush=True)
    if system == "pgqueue":
        from pgqueue import Worker

        from .bench_pgqueue import registry

        Worker(dsn, registry=registry(), backlog=20, poll_timeout=30.0).run()
    elif system == "pgqueue-burst":
        from pgqueue import Worker

        from .bench_pgqueue import registry

        Worker(dsn, registry=registry(), backlog=20, burst=True).run()
    elif system.startswith("pgqueuer-"):
        from .bench_pgqueuer import pickup_worker

        asyncio.run(pickup_worker(dsn, system.removeprefix("pgqueuer-")))
    elif system == "procrastinate":
        from .bench_procrastinate import pickup_worker

        asyncio.run(pickup_worker(dsn))
    else:
        raise SystemExit(f"unknown system {system!r}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""A worker in its own process for the pickup-latency measurement.

``python -m benchmarks.worker_proc SYSTEM DSN`` starts an idle, listening worker of
``SYSTEM`` (pgqueue, pgqueuer-asyncpg, pgqueuer-psycopg, procrastinate, celery, dramatiq;
for the last two DSN is a Redis URL) with a job ``pickup(key)`` that prints
``STARTED <key> <unix time>`` as soon as it starts. It prints ``READY`` first and runs until
terminated. ``pgqueue-burst`` drains the queue and exits (for the memory measurement);
``celery-drain URL N TIMEOUT`` runs Celery's drain worker until it has run N jobs and
prints ``DRAINED <seconds>`` (or ``TIMEOUT <count>`` after TIMEOUT seconds).
"""

from __future__ import annotations

import asyncio
import sys


def main(system: str, dsn: str, *extra: str) -> None:
    if system == "celery-drain":  # no READY: the parent only waits for DRAINED
        from .bench_celery import drain_worker

        drain_worker(dsn, int(extra[0]), float(extra[1]))
        return
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
    elif system == "celery":
        from .bench_celery import pickup_worker as celery_worker

        celery_worker(dsn)
    elif system == "dramatiq":
        from .bench_dramatiq import pickup_worker as dramatiq_worker

        dramatiq_worker(dsn)
    else:
        raise SystemExit(f"unknown system {system!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Enqueue from many producers (F32): one task per transaction from 8 and 32 pgbench clients,
and ``queue_task`` from 8 processes, against the same INSERT with the enqueue trigger
disabled (no notification at all), side by side.

Every transaction that sends NOTIFY commits alone (PostgreSQL holds a database-wide lock from
the notification's queueing through the commit's WAL flush), so when every enqueue notified
(revision pgqueue_0016_ended_per_minute and earlier) producers reached 30-50% of the plain
INSERT. Since revision pgqueue_0017_fewer_notifications an enqueue notifies only as the queue's
one notifier in flight or while a worker of the queue waits. The scenario measures both: a
database migrated to 0016 ("every enqueue notifies") and one migrated to the head, each
against itself with the trigger disabled, in turns (A B, then B A), no worker running.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from pgqueue import TaskBackend
from pgqueue._db import connect
from pgqueue._schema import migrate

from . import bench_pgbench, bench_pgqueue
from .common import Figures, Server, log

#: One no-op task per transaction, as ``queue_task`` inserts it.
INSERT = (
    "INSERT INTO pgqueue.task (name, queue, kwargs, meta_params, run_at, max_retries)"
    " VALUES ('noop', 'tasks', '{}', '{}', now(), 0);\n"
)

#: The revision before enqueues stopped notifying one by one.
EVERY_ENQUEUE_NOTIFIES = "pgqueue_0016_ended_per_minute"

#: Producer counts of the pgbench figures.
CLIENTS = (8, 32)

#: Processes of the ``queue_task`` figure.
PROCESSES = 8

#: (figure, the same without the trigger, least ratio wanted)
TARGETS: tuple[tuple[str, str, float | None], ...] = (
    *(
        (f"{n} pgbench clients, {state}", f"{n} pgbench clients, {state}, no trigger", least)
        for n in CLIENTS
        for state, least in (("pgqueue", 0.8), ("every enqueue notifies", None))
    ),
    (
        f"queue_task from {PROCESSES} processes, pgqueue",
        f"queue_task from {PROCESSES} processes, pgqueue, no trigger",
        0.8,
    ),
)


def _trigger(dsn: str, enabled: bool) -> None:
    """Empty the task table and enable or disable the enqueue trigger."""
    with connect(dsn) as conn:
        conn.execute("DELETE FROM pgqueue.task")
        conn.execute("VACUUM ANALYZE pgqueue.task")
        verb = "ENABLE" if enabled else "DISABLE"
        conn.execute(f"ALTER TABLE pgqueue.task {verb} TRIGGER task_queued")


def _produce(dsn: str, start: float, seconds: float) -> int:
    """One producer process: ``queue_task`` one no-op after another from ``start`` (a
    ``time.time()``) for ``seconds``; returns how many it queued."""
    with TaskBackend(dsn, registry=bench_pgqueue.registry()) as backend:
        backend.queue_task("noop")  # open the pool before the clock starts
        time.sleep(max(start - time.time(), 0.0))
        done = 0
        while time.time() < start + seconds:
            backend.queue_task("noop")
            done += 1
    return done


def queue_task_rate(dsn: str, seconds: float) -> float:
    """Tasks per second queued by :data:`PROCESSES` processes calling ``queue_task``."""
    start = time.time() + 3.0  # every process started and connected by then
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        counts = pool.starmap(_produce, [(dsn, start, seconds)] * PROCESSES)
    return sum(counts) / seconds


def _round(bin_dir: Path, dsn: str, state: str, seconds: float, result: Figures) -> None:
    for enabled in (True, False):
        suffix = "" if enabled else ", no trigger"
        for clients in CLIENTS:
            _trigger(dsn, enabled)
            tps = bench_pgbench.transactions_per_second(
                bin_dir, dsn, INSERT, seconds, clients=clients
            )
            result.add(f"{clients} pgbench clients, {state}{suffix}", tps)
        if state == "pgqueue":
            _trigger(dsn, enabled)
            rate = queue_task_rate(dsn, seconds)
            result.add(f"queue_task from {PROCESSES} processes, {state}{suffix}", rate)
    _trigger(dsn, True)


def run(server: Server, bin_dir: Path, seconds: float, repeat: int) -> Figures:
    """``repeat`` rounds, each measuring both databases with and without the trigger (the
    order of the databases alternating); the figures are transactions (tasks) per second."""
    databases = []
    revisions = (("pgqueue", "heads"), ("every enqueue notifies", EVERY_ENQUEUE_NOTIFIES))
    for state, revision in revisions:
        dsn = server.fresh_database(f"bench_producers_{len(databases)}")
        migrate(dsn, "pgqueue", revision)
        databases.append((state, dsn))
    result = Figures(0)
    for attempt in range(repeat):
        log(f"producers: run {attempt + 1}/{repeat}")
        for state, dsn in databases if attempt % 2 == 0 else databases[::-1]:
            _round(bin_dir, dsn, state, seconds, result)
    return result

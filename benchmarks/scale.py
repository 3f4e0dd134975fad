"""The scale scenario: claim and drain with millions of finished rows, and worker memory.

``--scale-rows`` finished tasks are written into the task table, a tenth of them updated once
more so the table and its indexes also carry dead tuples. Claim rate (the claim statement alone,
``concurrency`` tasks per statement) and drain rate are measured on the empty table, with the
history, and with the history while a transaction stays open in another session for the whole
measurement (it holds back vacuum: the F10 field failure). Worker memory is sampled from
``/proc`` while one worker process drains ``--memory-tasks`` tasks.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgqueue import TaskBackend
from pgqueue._db import connect
from pgqueue._schema import migrate
from pgqueue._store import Store
from pgqueue.worker import claim_session

from . import bench_pgqueue
from .common import ROOT, Sizes, analyze, child_env, log, rate, timer

HISTORY_CHUNK = 500_000

FILL_HISTORY = """
INSERT INTO pgqueue.task (name, queue, status, kwargs, result, time_queued, run_at,
                          time_started, time_ended, worker, attempts)
SELECT 'noop', 'tasks', 1, jsonb_build_object('n', g), 'null'::jsonb,
       now() - interval '2 days', now() - interval '2 days', now() - interval '2 days',
       now() - interval '2 days' + g * interval '1 ms', 'history', 1
FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g
"""
DIRTY_HISTORY = """
UPDATE pgqueue.task SET result = '1'::jsonb
WHERE status = 1 AND worker = 'history' AND mod((kwargs->>'n')::bigint, 10) = 0
"""


@dataclass
class ScaleResult:
    rows: int
    claim_empty: float = 0.0
    claim_full: float = 0.0
    claim_held: float = 0.0
    pages_empty: int = 0
    pages_full: int = 0
    pages_held: int = 0
    drain_empty: float = 0.0
    drain_full: float = 0.0
    drain_held: float = 0.0
    table_size: str = ""
    dead_tuples: int = 0
    memory_tasks: int = 0
    rss_kib: list[tuple[int, int]] = field(default_factory=list)  # (tasks done, RSS KiB)


def claim_rate(dsn: str, count: int, concurrency: int) -> tuple[float, int]:
    """Claims/s of the claim statement alone on a connection set up as the worker's claimer,
    ``concurrency`` tasks per statement, and the
    buffers (8 kB pages) one claim touched halfway through: a figure the machine's load
    does not blur."""
    registry = bench_pgqueue.registry()
    claim = Store("pgqueue").claim_tasks(
        queues=["tasks"], jobs=list(registry), limit=concurrency, worker="bench"
    )
    params = claim.params
    claimed = 0
    pages = 0
    with connect(dsn) as conn, timer() as elapsed:
        claim_session(conn)  # as the worker's claimer: one generic plan
        while claimed < count:
            if not pages and claimed >= count // 2:
                pages = _claim_pages(conn, claim.sql, params)
            rows = conn.execute(claim.sql, params).fetchall()
            if not rows:
                break
            claimed += len(rows)
    return rate(claimed, elapsed()), pages


def _claim_pages(conn: Any, claim: str, params: dict[str, Any]) -> int:
    """Shared buffers hit or read by one claim, in a transaction rolled back."""
    explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + claim
    with conn.transaction(force_rollback=True):
        plan = conn.execute(explain, params).fetchone()["QUERY PLAN"][0]["Plan"]
    return int(plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0))


def _measure(dsn: str, sizes: Sizes) -> tuple[float, int, float]:
    with TaskBackend(dsn, registry=bench_pgqueue.registry()) as backend:
        bench_pgqueue.enqueue_bulk(backend, sizes.jobs, sizes.batch)
        analyze(dsn)
        claim, pages = claim_rate(dsn, sizes.jobs, sizes.concurrency)
        with connect(dsn) as conn:
            conn.execute("DELETE FROM pgqueue.task WHERE worker = 'bench'")
        bench_pgqueue.enqueue_bulk(backend, sizes.jobs, sizes.batch)
    drain = bench_pgqueue.drain(dsn, sizes.jobs, sizes.concurrency)
    with connect(dsn) as conn:
        conn.execute("DELETE FROM pgqueue.task WHERE worker IS DISTINCT FROM 'history'")
    return claim, pages, drain


def run(dsn: str, sizes: Sizes, rows: int) -> ScaleResult:
    """Claim and drain rates on an empty table, then with ``rows`` finished rows."""
    migrate(dsn, "pgqueue")
    result = ScaleResult(rows)
    result.claim_empty, result.pages_empty, result.drain_empty = _measure(dsn, sizes)
    log(f"scale: writing {rows:,} finished rows")
    with connect(dsn) as conn:
        for start in range(1, rows + 1, HISTORY_CHUNK):
            conn.execute(
                FILL_HISTORY, {"start": start, "stop": min(start + HISTORY_CHUNK, rows + 1) - 1}
            )
        conn.execute(DIRTY_HISTORY)
        conn.execute("VACUUM ANALYZE pgqueue.task")
    result.claim_full, result.pages_full, result.drain_full = _measure(dsn, sizes)
    with connect(dsn, autocommit=False) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pgqueue.worker")  # takes the snapshot
        result.claim_held, result.pages_held, result.drain_held = _measure(dsn, sizes)
        holder.rollback()
    with connect(dsn) as conn:
        stats = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('pgqueue.task')) AS size, n_dead_tup"
            " FROM pg_stat_user_tables WHERE relid = 'pgqueue.task'::regclass"
        ).fetchone()
    if stats:
        result.table_size, result.dead_tuples = stats["size"], stats["n_dead_tup"]
    return result


def memory(dsn: str, tasks: int, sizes: Sizes) -> list[tuple[int, int]]:
    """(tasks done, worker RSS in KiB) about twice a second while one worker process drains
    ``tasks`` pre-filled no-op tasks."""
    migrate(dsn, "pgqueue")
    with TaskBackend(dsn, registry=bench_pgqueue.registry()) as backend:
        bench_pgqueue.enqueue_bulk(backend, tasks, 5_000)
    analyze(dsn)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.worker_proc", "pgqueue-burst", dsn],
        env=child_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    samples = []
    with connect(dsn) as conn:
        while proc.poll() is None:
            rss = _rss_kib(proc.pid)
            done = conn.execute(
                "SELECT count(*) AS n FROM pgqueue.task WHERE status = 1"
            ).fetchone()
            if rss and done:
                samples.append((int(done["n"]), rss))
            time.sleep(0.5)
    return samples


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None

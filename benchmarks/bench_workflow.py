"""Workflows against plain tasks: a group of N members with one callback, side by side with
N plain tasks, through real ``pgqueue-worker`` processes.

The workers start once and stay idle (listening); each run queues one batch in one statement
and waits until every task of it ended. The time of a run is the database's own: from the
first task's ``time_queued`` to the last one's ``time_ended``, so start-up and the polling
of this process do not count. Plain and group runs alternate (plain, group, plain, group...)
so that a machine that gets busier slows both alike. The issue's target: the group takes at
most 110% of the time of the plain tasks.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from pgqueue import Call, TaskBackend
from pgqueue._db import connect
from pgqueue._schema import migrate

from .bench_pgqueue import registry
from .common import ROOT, child_env, log

JOBS = "benchmarks.jobs"
#: Seconds one run may take before the benchmark gives up on it.
RUN_TIMEOUT = 600.0


@dataclass
class WorkflowResult:
    """Seconds per run (database clock), plain and group alternating."""

    tasks: int
    workers: int
    backlog: int
    plain: list[float] = field(default_factory=list)
    group: list[float] = field(default_factory=list)
    #: Steps of the chain scenario (0: not run), its seconds per step per run, and the
    #: seconds from queued to ended of single tasks queued one after another (each after the
    #: previous ended): what one step of a chain cannot go below.
    chain_steps: int = 0
    chain: list[float] = field(default_factory=list)
    single: list[float] = field(default_factory=list)

    def ratio(self) -> float | None:
        """Median group time over median plain time (None before both ran)."""
        if not self.plain or not self.group:
            return None
        return statistics.median(self.group) / statistics.median(self.plain)

    def chain_ratio(self) -> float | None:
        """Median seconds per chain step over the median single task's queued-to-ended time
        (None before both ran)."""
        if not self.chain or not self.single:
            return None
        return statistics.median(self.chain) / statistics.median(self.single)


def _start_workers(dsn: str, workers: int, backlog: int) -> list[subprocess.Popen[bytes]]:
    env = child_env()
    env["PGQUEUE_DSN"] = dsn
    command = [
        sys.executable,
        "-m",
        "pgqueue._worker_cli",
        "--task-paths",
        JOBS,
        "--backlog",
        str(backlog),
        "--log-level",
        "WARNING",
    ]
    return [
        subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]


def _stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ended(dsn: str, procs: list[subprocess.Popen[bytes]]) -> float:
    """Wait until no task is left unfinished; return the seconds from the first task queued
    to the last one ended (database clock), then delete them all."""
    deadline = time.monotonic() + RUN_TIMEOUT
    with connect(dsn) as conn:
        while True:
            left = conn.execute(
                "SELECT count(*) AS n FROM pgqueue.task WHERE status NOT IN (1, 2, 3)"
            ).fetchone()
            if left is not None and left["n"] == 0:
                break
            if any(proc.poll() is not None for proc in procs):
                raise RuntimeError("a pgqueue-worker of the workflow benchmark exited")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workflow run unfinished after {RUN_TIMEOUT:.0f} s: {left}")
            time.sleep(0.05)
        got = conn.execute(
            "SELECT extract(epoch FROM max(time_ended) - min(time_queued))::float8 AS seconds,"
            " count(*) FILTER (WHERE status <> 1) AS bad FROM pgqueue.task"
        ).fetchone()
        assert got is not None
        if got["bad"]:
            raise RuntimeError(f"{got['bad']} tasks of the workflow run did not succeed")
        conn.execute("DELETE FROM pgqueue.task")
        conn.execute("VACUUM ANALYZE pgqueue.task")
    return float(got["seconds"])


def _singles(backend: TaskBackend, dsn: str, count: int) -> float:
    """Queue ``count`` no-op tasks one after another, each once the previous one ended;
    return the median seconds from queued to ended (database clock), then delete them."""
    for _ in range(count):
        task_id = backend.queue_task("noop")
        if backend.wait_for_task(str(task_id), timeout=60) is None:
            raise RuntimeError(f"single task {task_id} of the workflow benchmark did not end")
    with connect(dsn) as conn:
        got = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
            "time_ended - time_queued))::float8 AS seconds FROM pgqueue.task"
        ).fetchone()
        conn.execute("DELETE FROM pgqueue.task")
    assert got is not None
    return float(got["seconds"])


def run(
    dsn: str,
    tasks: int,
    repeat: int,
    workers: int = 4,
    backlog: int = 20,
    chain_steps: int = 0,
) -> WorkflowResult:
    """Alternate ``repeat`` plain runs and ``repeat`` group runs of ``tasks`` no-op tasks on
    ``workers`` worker processes (``--backlog`` each) on the fresh database ``dsn``; with
    ``chain_steps``, also ``repeat`` chains of that many steps, each beside as many single
    tasks queued one after another (the issue's "a chain costs per step about one pickup
    latency")."""
    migrate(dsn, "pgqueue")
    result = WorkflowResult(tasks=tasks, workers=workers, backlog=backlog, chain_steps=chain_steps)
    procs = _start_workers(dsn, workers, backlog)
    try:
        with TaskBackend(dsn, registry=registry()) as backend:
            backend.queue_tasks("noop", [{}] * min(tasks, 100))  # warm the workers up
            _wait_ended(dsn, procs)
            for attempt in range(repeat):
                log(f"workflow run {attempt + 1}/{repeat}: {tasks:,} plain tasks")
                backend.queue_tasks("noop", [{}] * tasks)
                result.plain.append(_wait_ended(dsn, procs))
                log(f"workflow run {attempt + 1}/{repeat}: group of {tasks:,} with a callback")
                backend.group([Call("noop")] * tasks, then=Call("noop"))
                result.group.append(_wait_ended(dsn, procs))
                if chain_steps:
                    log(f"workflow run {attempt + 1}/{repeat}: chain of {chain_steps:,} steps")
                    backend.chain(*[Call("noop")] * chain_steps)
                    result.chain.append(_wait_ended(dsn, procs) / chain_steps)
                    result.single.append(_singles(backend, dsn, min(chain_steps, 200)))
    finally:
        _stop_workers(procs)
    return result

"""What a failover costs: a primary killed in the middle of a drain and of an enqueue stream,
its streaming standby promoted; synchronous against asynchronous replication (#15).

    python benchmarks/failover.py                      # both modes, 3,000 tasks each
    python benchmarks/failover.py --modes async --tasks 5000 --repeat 3

Each run starts a primary and a standby (``pg_basebackup``, see
``tests/support/replication_support.py``), pre-fills ``--tasks`` no-op tasks and starts
``--workers`` ``pgqueue-worker`` processes and one producer (one ``queue_task`` after another)
on the multi-host DSN with ``target_session_attrs=read-write``. Once a third of the tasks
ended, every process of the primary gets SIGKILL; ``--detect`` seconds later (a monitor's
reaction time) the standby is promoted. The drain then completes on the new primary. Then
the dead primary's data directory is started on its own (crash recovery replays its WAL: what
it had committed) and compared, task by task, with the new primary:

- *enqueues lost*: ids the producer got back (acknowledged) that the new primary never had;
- *outcomes lost*: tasks that had ended on the old primary but ran again on the new one (their
  ``time_started`` differs): the job ran twice;
- *in flight, re-run*: tasks running at the kill that ran again (in every mode: pgqueue runs
  a task at least once);
- *stuck*: tasks still not ended 60 s after the promotion (STARTED under a live worker that
  never received the claim's answer: its connection died while the claim committed);
- *failover time*: kill to the first task that finished on the new primary (includes
  ``--detect``), and promotion to that task.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_pgqueue import JOBS, registry
from benchmarks.common import ROOT, child_env, log
from pgqueue import TaskBackend, states
from pgqueue._db import connect
from pgqueue._schema import migrate
from tests.support.pgbouncer_support import free_port
from tests.support.replication_support import ReplicatedPair, run

TASK_ROWS = "SELECT id::text AS id, status, attempts, time_started, time_ended FROM pgqueue.task"


@dataclass
class FailoverResult:
    mode: str
    tasks: int = 0  # on the new primary at the end
    acknowledged: int = 0  # enqueues that returned an id
    enqueues_lost: int = 0
    outcomes_lost: int = 0
    in_flight_rerun: int = 0
    claims_lost: int = 0  # claims committed on the old primary, gone on the new (re-claimed)
    #: tasks not in a terminal state 60 s after the promotion: STARTED under a worker that is
    #: alive but never got the claim's answer (the connection died while the claim committed)
    unfinished: int = 0
    kill_to_first: float = 0.0  # seconds
    promote_to_first: float = 0.0  # seconds
    lag_bytes: int = -1  # the standby's replay lag just before the kill (bytes of WAL)


def _rows(dsn: str) -> dict[str, dict[str, Any]]:
    with connect(dsn) as conn:
        return {row["id"]: row for row in conn.execute(TASK_ROWS).fetchall()}


def run_mode(
    mode: str, tasks: int, workers: int, detect: float, lease: float = 5.0
) -> FailoverResult:
    """One failover with ``mode`` ``sync`` or ``async`` replication."""
    pair = ReplicatedPair(synchronous=mode == "sync")
    try:
        return _measure(pair, mode, tasks, workers, detect, lease)
    finally:
        pair.stop()  # whatever failed: no server is left running


def _measure(
    pair: ReplicatedPair, mode: str, tasks: int, workers: int, detect: float, lease: float
) -> FailoverResult:
    result = FailoverResult(mode)
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    acked: list[str] = []
    try:
        pair.create_database("queue")
        migrate(pair.dsn("queue"), "pgqueue")
        both = pair.both("queue")
        with TaskBackend(both, registry=registry()) as backend:
            backend.queue_tasks("noop", [{}] * tasks)
        env = child_env()
        env.update(
            PGQUEUE_DSN=both,
            PGQUEUE_TASK_PATHS=JOBS,
            PGQUEUE_LEASE=str(lease),
            PGQUEUE_POLL_TIMEOUT="0.5",
            PGQUEUE_LOG_LEVEL="ERROR",
        )
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pgqueue._worker_cli"],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

        def produce() -> None:
            with TaskBackend(both, registry=registry()) as producer:
                while not stop.is_set():
                    try:
                        task_id = producer.queue_task("noop")
                    except Exception:  # the outage: not acknowledged
                        time.sleep(0.05)
                        continue
                    if task_id is not None:
                        acked.append(task_id)

        producer = threading.Thread(target=produce, name="failover-producer")
        producer.start()
        primary = pair.dsn("queue")
        deadline = time.monotonic() + 120
        with connect(primary) as conn:
            while True:
                row = conn.execute(
                    "SELECT count(*) AS n FROM pgqueue.task WHERE status = %s", [states.SUCCESS]
                ).fetchone()
                if row and row["n"] >= tasks // 3:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the drain did not start")
                time.sleep(0.02)
            lag = conn.execute(
                "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), -1)"
                " AS lag FROM pg_stat_replication"
            ).fetchone()
            result.lag_bytes = int(lag["lag"]) if lag else -1
        pair.kill_primary()
        killed_at = time.time()
        log(f"{mode}: primary killed, promoting in {detect} s")
        time.sleep(detect)
        pair.promote()
        promoted_at = time.time()
        time.sleep(2.0)  # the producer goes on against the new primary
        stop.set()
        producer.join(60)
        new = pair.dsn("queue", standby=True)
        deadline = time.monotonic() + 60
        while True:
            with connect(new) as conn:
                live = conn.execute(
                    "SELECT t.id, t.status, t.attempts, t.worker, t.run_at > now() AS later,"
                    " w.heartbeat_at, w.stopped_at FROM pgqueue.task t"
                    " LEFT JOIN pgqueue.worker w ON w.id = t.worker"
                    " WHERE t.status IN (4, 5, 6)"
                ).fetchall()
            if not live:
                break
            if time.monotonic() > deadline:
                log(f"{mode}: the drain did not complete on the new primary: {live[:5]}")
                break
            time.sleep(0.2)
        with connect(new) as conn:
            first = conn.execute(
                "SELECT extract(epoch FROM min(time_ended))::float8 AS t FROM pgqueue.task"
                " WHERE time_ended > to_timestamp(%s)",
                [killed_at],
            ).fetchone()
        first_at = float(first["t"]) if first and first["t"] is not None else float("nan")
        result.kill_to_first = first_at - killed_at
        result.promote_to_first = first_at - promoted_at
    finally:
        stop.set()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    try:
        new_rows = _rows(pair.dsn("queue", standby=True))
        # the dead primary, on its own: crash recovery replays what it had committed
        port = free_port()
        run(
            "pg_ctl", "-D", str(pair.primary), "-l", str(pair.primary / "after.log"),
            "-o", f"-p {port}", "-w", "start",
        )  # fmt: skip
        old_dsn = pair.dsn("queue").replace(f"port={pair.primary_port}", f"port={port}")
        old_rows = _rows(old_dsn)
    finally:
        pair.stop()  # (stop is idempotent: the caller's stop then finds nothing running)
    result.tasks = len(new_rows)
    result.acknowledged = len(acked)
    result.enqueues_lost = sum(1 for task_id in acked if task_id not in new_rows)
    result.unfinished = sum(1 for r in new_rows.values() if r["status"] not in states.READY_STATES)
    for task_id, old in old_rows.items():
        now = new_rows.get(task_id)
        if now is None or old["time_started"] is None:
            continue
        if now["time_started"] == old["time_started"]:
            continue  # the claim survived (and the outcome, if any, is the same run's)
        if old["status"] in states.READY_STATES:
            result.outcomes_lost += 1
        elif old["status"] == states.STARTED:
            result.in_flight_rerun += 1
        if now["attempts"] <= old["attempts"]:
            result.claims_lost += 1  # claimed anew from QUEUED: the old claim was not there
    return result


def table(results: list[FailoverResult]) -> str:
    head = (
        f"{'mode':<6} {'lag B':>7} {'acked':>6} {'enq lost':>8} {'outc lost':>9} "
        f"{'in flight re-run':>16} {'claims lost':>11} {'stuck':>5} "
        f"{'kill->1st s':>11} {'promote->1st s':>14}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.mode:<6} {r.lag_bytes:>7} {r.acknowledged:>6} {r.enqueues_lost:>8} "
            f"{r.outcomes_lost:>9} {r.in_flight_rerun:>16} {r.claims_lost:>11} "
            f"{r.unfinished:>5} {r.kill_to_first:>11.2f} {r.promote_to_first:>14.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--modes", default="sync,async", help="sync, async or both")
    parser.add_argument("--tasks", type=int, default=3_000, help="tasks pre-filled per run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--detect", type=float, default=1.0, help="seconds kill -> promote")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode, interleaved")
    args = parser.parse_args(argv)
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)  # expected in the outage
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"sync", "async"}:
        parser.error("--modes takes sync, async or sync,async")
    results = [
        run_mode(mode, args.tasks, args.workers, args.detect)
        for _ in range(args.repeat)
        for mode in modes
    ]
    print(
        f"failover: {args.tasks:,} no-op tasks, {args.workers} worker processes and one "
        f"producer, SIGKILL of the primary at a third of the drain, promotion {args.detect} s "
        "later"
    )
    print(table(results))
    bad = [r for r in results if r.mode == "sync" and r.enqueues_lost]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

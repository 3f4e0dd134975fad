"""A fleet of worker processes through one PgBouncer against a few direct workers (#15).

    python benchmarks/fleet.py --processes 200 --tasks 100000
    python benchmarks/fleet.py --processes 30 --tasks 3000 --direct 4 --dsn postgresql://...

Each of the ``--processes`` workers is its own ``pgqueue-worker`` process with its own
identity (``host:pid:random``), as if each ran on its own host; all of them reach PostgreSQL
through ONE PgBouncer in transaction pooling mode whose pool to the server is ``--pool``
connections. Without ``--listen-direct`` they run poll-only (what pgqueue picks by itself
behind a transaction pooler); with it each also holds one LISTEN connection straight to
PostgreSQL. The comparison is ``--direct`` worker processes connected straight to PostgreSQL
(LISTEN included), as on one host today.

Each run queues ``--tasks`` no-op tasks held back (``run_at`` a day ahead), starts the
workers, waits until every one has registered, then releases the tasks in one statement and
times the drain. Pickup latency is then measured on the idle fleet: tasks queued one at a
time, ``time_started - time_queued`` on the database clock. A sampler counts the server's
backends of the database (``pg_stat_activity``) every 50 ms the whole time. Checked, not
just measured: every task ends SUCCESS after exactly one attempt (a task run twice would have
been claimed twice), and the most backends ever seen stay within the pool plus the direct
listeners. Without ``--dsn`` an embedded throwaway PostgreSQL is started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import psycopg

from benchmarks.bench_pgqueue import JOBS, registry
from benchmarks.common import ROOT, Server, child_env, log, percentile
from pgqueue import TaskBackend, states
from pgqueue._db import connect
from pgqueue._schema import migrate
from tests.support.pgbouncer_support import PgBouncer

#: Seconds between two samples of pg_stat_activity.
SAMPLE_EVERY = 0.05
#: pgqueue-worker, with the stacks of its threads written to stderr on SIGUSR1 (sent to a
#: process that has not stopped :data:`STOP_REPORT` seconds after SIGTERM).
WORKER = (
    "import faulthandler, signal; faulthandler.register(signal.SIGUSR1); "
    "from pgqueue._worker_cli import main; main()"
)
STOP_REPORT = 30.0
#: The exit status of a worker that could not reach the database at start-up.
EXIT_UNAVAILABLE = 3
#: Terminal states, as SQL.
TERMINAL = ",".join(str(s) for s in sorted(states.READY_STATES))


@dataclass
class FleetResult:
    """One run: how many processes, through what, and what was seen."""

    label: str
    processes: int
    tasks: int
    bound: int  # most server backends allowed: pool + direct listeners; 0: direct, no bound
    started_in: float = 0.0  # seconds until every process had registered
    drain_wall: float = 0.0  # seconds from the release to the last task ended (polled)
    drain_span: float = 0.0  # database clock: first task started to last task ended
    pickup: list[float] = field(default_factory=list)  # seconds, database clock
    statuses: dict[int, int] = field(default_factory=dict)
    rerun: int = 0  # tasks with attempts other than 1
    max_backends: int = 0  # most client backends of the database at one sample
    samples: int = 0
    exit_codes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # worker log lines at ERROR or worse
    wal_enqueue: float = 0.0  # WAL bytes per task of the bulk enqueue (queue_tasks, 5,000)
    wal_drain: float = 0.0  # WAL bytes per task of the drain (claim, start, finish)
    server_cpu: float = 0.0  # CPU seconds of the server's processes during the drain
    restarts: int = 0  # processes started again after exiting 3 (no database at start-up)

    @property
    def exactly_once(self) -> bool:
        """Every task SUCCESS, claimed exactly once."""
        return self.statuses == {states.SUCCESS: self.tasks} and self.rerun == 0

    @property
    def within_bound(self) -> bool:
        """Through PgBouncer: never more backends than the pool plus the direct listeners."""
        return self.bound == 0 or self.max_backends <= self.bound

    def drain_rate(self) -> float:
        return self.tasks / self.drain_span if self.drain_span > 0 else 0.0

    def wall_rate(self) -> float:
        return self.tasks / self.drain_wall if self.drain_wall > 0 else 0.0


class Monitor:
    """One connection straight to the server that counts the client backends of one database
    every :data:`SAMPLE_EVERY` seconds (its own not counted) and runs the run's other
    queries, so that the only backends counted are the workers' (and PgBouncer's)."""

    def __init__(self, dsn: str, database: str) -> None:
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conn = connect(dsn)
        self._database = database
        self._thread = threading.Thread(target=self._run, name="fleet-sampler", daemon=True)
        self._thread.start()

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def execute(self, sql: str) -> None:
        with self._lock:
            self._conn.execute(sql)

    def scalar(self, sql: str, params: Any = None) -> Any:
        rows = self.query(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def _run(self) -> None:
        while not self._stop.is_set():
            n = self.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                [self._database],
            )
            self.most = max(self.most, int(n))
            self.samples += 1
            self._stop.wait(SAMPLE_EVERY)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._conn.close()


LSN = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"


def _lsn(conn: Any) -> int:
    row = conn.execute(LSN).fetchone()
    return int(next(iter(row.values())))


def postmaster(conn: Any) -> psutil.Process | None:
    """The server's postmaster when it runs on this machine (read from its data directory's
    ``postmaster.pid``), else None."""
    try:
        row = conn.execute("SELECT current_setting('data_directory') AS d").fetchone()
        pid = int((Path(row["d"]) / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)
    except (OSError, ValueError, psutil.Error, psycopg.Error):
        return None


def server_cpu_seconds(master: psutil.Process | None) -> float:
    """User plus system CPU seconds of the postmaster and its processes (backends that
    exited meanwhile are not counted); 0 when the server is not on this machine."""
    total = 0.0
    if master is None:
        return total
    for proc in [master, *master.children()]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _wait(what: str, check: Any, timeout: float, every: float = 0.25) -> float:
    """Call ``check()`` every ``every`` seconds until true; return the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - started


def run_one(
    server: Server,
    processes: int,
    tasks: int,
    *,
    pool: int | None,
    listen_direct: bool = False,
    backlog: int = 4,
    poll_timeout: float = 2.0,
    pickup_samples: int = 50,
    timeout: float = 900.0,
    start_rate: int = 20,
) -> FleetResult:
    """One run of ``processes`` worker processes draining ``tasks`` tasks, through a
    PgBouncer with a pool of ``pool`` server connections, or straight to the server when
    ``pool`` is None. Raises RuntimeError when the workers do not start or drain in time."""
    database = f"pgqueue_fleet_{'pooled' if pool else 'direct'}"
    dsn = server.fresh_database(database)
    migrate(dsn, "pgqueue")
    with connect(dsn) as conn:
        before = _lsn(conn)
        master = postmaster(conn)
    with TaskBackend(dsn, registry=registry()) as backend:
        for start in range(0, tasks, 5_000):
            backend.queue_tasks("noop", [{}] * min(5_000, tasks - start))
    with connect(dsn) as conn:
        enqueue_wal = _lsn(conn) - before
        conn.execute("UPDATE pgqueue.task SET run_at = now() + interval '1 day'")
        conn.execute("VACUUM ANALYZE pgqueue.task")
    if pool:
        label = f"{processes} processes, PgBouncer transaction pool {pool}"
        label += ", direct LISTEN" if listen_direct else ", poll-only"
        bound = pool + (processes if listen_direct else 0)
    else:
        label = f"{processes} processes, direct"
        bound = 0  # no bound: every process holds its own connections
    result = FleetResult(label, processes, tasks, bound, wal_enqueue=enqueue_wal / tasks)
    bouncer = (
        PgBouncer(server.admin_dsn, "transaction", pool, max_client_conn=8 * processes + 100)
        if pool
        else None
    )
    env = child_env()
    env.update(
        PGQUEUE_DSN=bouncer.dsn(dsn) if bouncer else dsn,
        PGQUEUE_TASK_PATHS=JOBS,
        PGQUEUE_BACKLOG=str(backlog),
        PGQUEUE_POLL_TIMEOUT=str(poll_timeout),
        PGQUEUE_LOG_LEVEL="WARNING",
    )
    if bouncer and listen_direct:
        env["PGQUEUE_LISTEN_DSN"] = dsn
    monitor = Monitor(dsn, database)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryFile() as worker_log:
        try:
            started = time.monotonic()

            def start() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    [sys.executable, "-c", WORKER],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=worker_log,
                )

            for n in range(processes):
                if n and n % start_rate == 0:
                    time.sleep(1.0)  # hosts do not all start in the same millisecond
                procs.append(start())

            def registered() -> bool:
                for i, proc in enumerate(procs):
                    # a worker that cannot connect at start exits 3; its service manager
                    # would start it again, and so does the run (counted)
                    if proc.poll() == EXIT_UNAVAILABLE and result.restarts < processes:
                        result.restarts += 1
                        procs[i] = start()
                gone = [p.returncode for p in procs if p.poll() not in (None, EXIT_UNAVAILABLE)]
                if gone:
                    raise RuntimeError(f"{len(gone)} worker processes exited: {gone[:5]}")
                n = monitor.scalar("SELECT count(*) FROM pgqueue.worker WHERE stopped_at IS NULL")
                return bool(n == processes)

            _wait("every worker registered", registered, max(120.0, processes * 2.0), 0.5)
            result.started_in = time.monotonic() - started
            log(f"{label}: {processes} registered in {result.started_in:.1f} s; releasing")
            time.sleep(poll_timeout)  # each has claimed (nothing) once and is waiting
            monitor.execute("UPDATE pgqueue.task SET run_at = now()")
            wal_at, cpu_at = monitor.scalar(LSN), server_cpu_seconds(master)
            result.drain_wall = _wait(
                f"{tasks} tasks ended",
                lambda: (
                    monitor.scalar(
                        f"SELECT count(*) FROM pgqueue.task WHERE status IN ({TERMINAL})"
                    )
                    == tasks
                ),
                timeout,
            )
            result.server_cpu = server_cpu_seconds(master) - cpu_at
            result.wal_drain = (int(monitor.scalar(LSN)) - int(wal_at)) / tasks
            (span,) = monitor.query(
                "SELECT extract(epoch FROM max(time_ended) - min(time_started))::float8 AS s,"
                " count(*) FILTER (WHERE attempts <> 1) AS rerun FROM pgqueue.task"
            )
            result.drain_span, result.rerun = float(span["s"] or 0), int(span["rerun"])
            for row in monitor.query("SELECT status, count(*) AS n FROM pgqueue.task GROUP BY 1"):
                result.statuses[int(row["status"])] = int(row["n"])
            log(f"{label}: drained in {result.drain_wall:.1f} s; pickup")
            result.pickup = _pickup(
                monitor, env["PGQUEUE_DSN"], pickup_samples, max(60.0, poll_timeout * 10)
            )
            log(f"{label}: stopping")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 120
            reported = False
            for proc in procs:
                if not reported:
                    try:
                        proc.wait(STOP_REPORT)
                    except subprocess.TimeoutExpired:
                        reported = True
                        stuck = [p for p in procs if p.poll() is None]
                        log(f"{len(stuck)} workers still running {STOP_REPORT:.0f} s after "
                            "SIGTERM: their stacks go to the workers' log")  # fmt: skip
                        for other in stuck:
                            other.send_signal(signal.SIGUSR1)
                        for row in monitor.query(
                            "SELECT pid, state, wait_event_type, wait_event,"
                            " left(query, 100) AS query FROM pg_stat_activity"
                            " WHERE datname = %s AND pid <> pg_backend_pid()",
                            [database],
                        ):
                            log(f"  backend {row}")
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            result.exit_codes = sorted({p.returncode for p in procs})
            monitor.stop()
            result.max_backends, result.samples = monitor.most, monitor.samples
            if bouncer:
                bouncer.stop()  # SIGTERM: PgBouncer closes its server connections at once
            worker_log.seek(0)
            lines = worker_log.read().decode(errors="replace").splitlines()
            result.errors = [line for line in lines if "ERROR" in line or "Traceback" in line]
            if reported:
                log("\n".join(lines[-400:]))
    return result


def _pickup(monitor: Monitor, dsn: str, samples: int, timeout: float) -> list[float]:
    """Queue ``samples`` tasks through ``dsn`` (the workers' way in) one at a time on the idle
    workers, 0.1 s apart; once all ran, return each one's ``time_started - time_queued``
    (seconds, database clock)."""
    ids: list[str] = []
    with TaskBackend(dsn, registry=registry()) as backend:
        for _ in range(samples):
            task_id = backend.queue_task("noop")
            assert task_id is not None
            ids.append(task_id)
            time.sleep(0.1)
    _wait(
        "pickup tasks ended",
        lambda: (
            monitor.scalar(
                f"SELECT count(*) FROM pgqueue.task WHERE id = ANY(%s::uuid[])"
                f" AND status IN ({TERMINAL})",
                [ids],
            )
            == len(ids)
        ),
        timeout,
        0.1,
    )
    rows = monitor.query(
        "SELECT extract(epoch FROM time_started - time_queued)::float8 AS s"
        " FROM pgqueue.task WHERE id = ANY(%s::uuid[])",
        [ids],
    )
    return [float(row["s"]) for row in rows]


def table(results: list[FleetResult]) -> str:
    """The figures of every run, one line each."""
    head = (
        f"{'run':<58} {'start s':>7} {'drain/s':>8} {'wall/s':>8} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'max ms':>7} {'backends':>8} {'bound':>5} {'exactly once':>12} "
        f"{'WAL enq B':>9} {'WAL drain B':>11} {'srv CPU s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        pick = [percentile(r.pickup, q) * 1000 for q in (0.5, 0.95, 1.0)] if r.pickup else [0] * 3
        bound = str(r.bound) if r.bound else "-"
        lines.append(
            f"{r.label:<58} {r.started_in:>7.1f} {r.drain_rate():>8,.0f} {r.wall_rate():>8,.0f} "
            f"{pick[0]:>7.1f} {pick[1]:>7.1f} {pick[2]:>7.1f} {r.max_backends:>8} {bound:>5} "
            f"{'yes' if r.exactly_once else 'NO':>12} {r.wal_enqueue:>9,.0f} {r.wal_drain:>11,.0f} "
            f"{r.server_cpu:>9.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=200, help="worker processes (fleet)")
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks drained per run")
    parser.add_argument("--pool", type=int, default=20, help="PgBouncer's server connections")
    parser.add_argument("--direct", type=int, default=4, help="direct worker processes (0: none)")
    parser.add_argument("--listen-direct", action="store_true", help="fleet LISTENs directly")
    parser.add_argument("--backlog", type=int, default=4, help="tasks each process runs at once")
    parser.add_argument("--poll-timeout", type=float, default=2.0, help="seconds between polls")
    parser.add_argument("--samples", type=int, default=50, help="pickup samples per run")
    parser.add_argument("--start-rate", type=int, default=20, help="processes started a second")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, interleaved")
    parser.add_argument("--dsn", help="a superuser DSN of the server (default: embedded)")
    args = parser.parse_args(argv)
    wanted = args.processes + args.direct + args.pool + 50
    if args.listen_direct:
        wanted += args.processes
    server = Server(args.dsn, settings={"max_connections": str(max(200, wanted))})
    results: list[FleetResult] = []
    try:
        for _ in range(args.repeat):
            results.append(
                run_one(
                    server,
                    args.processes,
                    args.tasks,
                    pool=args.pool,
                    listen_direct=args.listen_direct,
                    backlog=args.backlog,
                    poll_timeout=args.poll_timeout,
                    pickup_samples=args.samples,
                    start_rate=args.start_rate,
                )
            )
            if args.direct:
                results.append(
                    run_one(
                        server,
                        args.direct,
                        args.tasks,
                        pool=None,
                        backlog=args.backlog,
                        poll_timeout=args.poll_timeout,
                        pickup_samples=args.samples,
                    )
                )
    finally:
        server.close()
    print(f"fleet: {args.tasks:,} no-op tasks per run, backlog {args.backlog} per process, "
          f"poll every {args.poll_timeout} s, {os.cpu_count()} CPUs")  # fmt: skip
    print(table(results))
    for r in results:
        if r.restarts:
            print(f"{r.label}: {r.restarts} processes exited 3 at start-up and were started again")
        if r.errors:
            print(f"{r.label}: {len(r.errors)} error lines, first: {r.errors[0]}")
    bad = [r for r in results if not r.exactly_once or not r.within_bound or r.exit_codes != [0]]
    for r in bad:
        print(f"FAILED {r.label}: statuses {r.statuses}, re-run {r.rerun}, "
              f"backends {r.max_backends} > {r.bound}?, exit codes {r.exit_codes}")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

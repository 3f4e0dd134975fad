"""Chaos run: several real workers, random SIGKILL/SIGTERM and database restarts/outages,
then the crash-safety invariants are checked.

    python -m tests.chaos --duration 120 --workers 4        # own embedded PostgreSQL
    python -m tests.chaos --dsn postgresql://... --duration 60  # a database of yours (no
                                                                  # restarts/outages then)

While it runs, tasks of ``tests.support.crash_jobs.tracked`` (each records its execution, then
sleeps 0-1 s) are queued continuously; some share a lock key. At random moments one of these
happens: a worker is SIGKILLed, a worker is SIGTERMed (graceful: finishes or gives back), the
server restarts, the server is down for twice the lease. Killed and stopped workers are
replaced. Then the queue is drained and these invariants are checked:

1. every task ends in exactly one terminal state (SUCCESS, FAILURE or REVOKED);
2. no STARTED task sits without a live owner for longer than the lease plus one rescue
   interval plus 5 s of reconnect slack (sampled every 0.5 s, with the rescuer's rule that a
   lease counts from the server's start);
3. at most one live task per lock_id (sampled, and at the end);
4. no task ran twice except after its worker really died (SIGKILL), gave it back at
   shutdown (SIGTERM) or was frozen past its lease (stall): every run but the last of a task
   belongs to such a worker;
5. with ``--contract-events``: no two executions of a lock_id (runs of ``crash_runs``, from
   ``at`` to ``ended_at``, less the time their process was frozen) overlap by more than one
   heartbeat interval (lease/4) plus ``OVERLAP_SLACK``;
6. enqueue never fails, except for a connection error while the server restarts or is down;
7. with ``--notify-flood``: after each flood the NOTIFY queue drains below half full once its
   holder's transaction ends.

``--contract-events`` adds the events of issue 12: a worker is frozen (SIGSTOP) for twice
the lease, then resumed; an operator session holds a worker's registry row (``FOR UPDATE``)
for twice the lease, blocking its heartbeat.

``--failovers`` (own servers only) runs everything on a primary and a synchronous streaming
standby (:class:`tests.support.replication_support.ReplicatedPair`) through a multi-host DSN
with ``target_session_attrs=read-write`` and adds failovers: the primary is killed (SIGKILL,
every process), the standby promoted a second later, and the dead primary's directory made
anew as the new primary's standby, again and again. A task may run again when its run had
started before a failover was over (invariant 4 counts those apart).

``--notify-flood`` (own server only, whose NOTIFY queue is then made small:
``max_notify_queue_pages`` = ``NOTIFY_QUEUE_PAGES``, PostgreSQL 17+) adds the full NOTIFY
queue of F27 every few seconds: one session LISTENs and sits idle in a transaction, so the
queue cannot be trimmed, while another fills it with notifications until PostgreSQL refuses
one; it stays full for twice the lease while tasks go on being queued (pgqueue stops
notifying at half full; workers find the tasks by polling), then the idle transaction ends.

Exit status 0 when every invariant holds, 1 otherwise. The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pgqueue import TaskBackend, states
from pgqueue._db import connect, quote_ident
from pgqueue._embedded import EmbeddedPostgres
from pgqueue._errors import ConnectionFailed
from pgqueue._schema import migrate
from tests.support.crash import CRASH_JOBS, WorkerProcess, make_runs_table
from tests.support.replication_support import ReplicatedPair

#: Seconds past lease + rescue interval (lease/4) after which a STARTED task of a lost owner
#: counts as stuck: covers the rescuers' own reconnect backoff after a restart or outage.
STUCK_SLACK = 5.0

STUCK_SQL = """
SELECT t.id FROM pgqueue.task t LEFT JOIN pgqueue.worker w ON w.id = t.worker
WHERE t.status = 5 AND (
    w.id IS NULL AND t.time_started < now() - %(grace)s * interval '1 second'
    OR w.stopped_at < now() - %(grace)s * interval '1 second'
    OR greatest(w.heartbeat_at, pg_postmaster_start_time())
       + (w.lease_seconds + %(grace)s) * interval '1 second' < now())
"""
#: Seconds of overlap allowed beyond one heartbeat interval (a loaded machine's scheduling).
OVERLAP_SLACK = 1.0

#: Every execution of a lock_id task, with its start and end (a killed run ends at its start).
LOCK_RUNS_SQL = """
SELECT r.task_id::text AS task_id, r.attempt, r.pid, t.lock_id,
       extract(epoch FROM r.at)::float8 AS started,
       extract(epoch FROM coalesce(r.ended_at, r.at))::float8 AS ended
FROM crash_runs r JOIN pgqueue.task t ON t.id = r.task_id
WHERE t.lock_id IS NOT NULL ORDER BY t.lock_id, r.at
"""
DOUBLE_LOCK_SQL = """
SELECT lock_id FROM pgqueue.task WHERE status IN (4, 5, 6) AND lock_id IS NOT NULL
GROUP BY lock_id HAVING count(*) > 1
"""

#: The NOTIFY queue of the run's own server with ``--notify-flood``: PostgreSQL's minimum,
#: 64 pages of 8 kB, so that a flood fills it in well under a second.
NOTIFY_QUEUE_PAGES = 64
NOTIFY_QUEUE_USAGE = "SELECT pg_notification_queue_usage()::float8 AS usage"
#: One batch of a flood: 100 distinct notifications of about 500 bytes, about 7 of the 64
#: pages (distinct, because PostgreSQL sends identical ones of one transaction only once).
FLOOD_BATCH = (
    "SELECT pg_notify('chaos_flood', g::text || repeat('x', 500)) FROM generate_series(1, 100) g"
)
#: The last notifications of a flood, about a page each, until PostgreSQL refuses one.
FLOOD_PAGE = "SELECT pg_notify('chaos_flood', repeat('x', 7900))"
#: Seconds after its holder's transaction ended within which a flooded queue must be below
#: half full again.
FLOOD_DRAIN_TIMEOUT = 10.0


@dataclass
class Report:
    """What the run did and found."""

    seconds: float = 0.0
    workers: int = 0
    tasks: int = 0
    duplicates_refused: int = 0
    sigkills: int = 0
    sigterms: int = 0
    restarts: int = 0
    outages: int = 0
    failovers: int = 0
    runs: int = 0
    reruns_after_kill: int = 0
    reruns_after_giveback: int = 0
    reruns_after_stall: int = 0
    reruns_after_failover: int = 0
    stalls: int = 0
    blocked_heartbeats: int = 0
    notify_floods: int = 0
    queued_while_flooded: int = 0
    worst_notify_usage: float = 0.0
    enqueue_failures: int = 0
    worst_overlap: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


class Chaos:
    """One chaos run against ``dsn``; ``restart``/``outage`` act on its server (or None)."""

    def __init__(
        self,
        dsn: str,
        *,
        workers: int,
        lease: float,
        restart: Callable[[], None] | None,
        outage: Callable[[float], None] | None,
        seed: int,
        contract_events: bool = False,
        notify_flood: bool = False,
        failover: Callable[[], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.failover = failover
        #: (kill, promoted and a new standby streaming) of each failover, epoch seconds
        self.failover_windows: list[tuple[float, float]] = []
        self.size = workers
        self.lease = lease
        self.restart = restart
        self.outage = outage
        self.random = random.Random(seed)  # which event, when, whom: repeatable per seed
        # The producer draws from its own generator, so how many tasks it queued meanwhile
        # cannot change which events a seed gives.
        self.task_random = random.Random(None if seed is None else seed + 1)
        # Floods run in their own thread with their own generator: the other events of a
        # seed stay the same with or without them.
        self.flood_random = random.Random(None if seed is None else seed + 2)
        self.report = Report(workers=workers)
        self.procs: list[WorkerProcess] = []
        self.killed_pids: set[int] = set()
        self.stopped_pids: set[int] = set()
        self.stalled_pids: set[int] = set()
        self.contract_events = contract_events
        self.notify_flood = notify_flood
        self._flooded = threading.Event()  # set while a flood holds the NOTIFY queue full
        #: pid -> (frozen from, resumed at) on the database clock, epoch seconds
        self.frozen: dict[int, list[tuple[float, float]]] = {}
        self.task_ids: list[str] = []
        self._stop = threading.Event()
        self._drained = threading.Event()

    # -- workers ---------------------------------------------------------------------------

    def start_worker(self) -> None:
        self.procs.append(
            WorkerProcess(
                self.dsn,
                "--lease",
                str(self.lease),
                "--backlog",
                "3",
                "--shutdown-timeout",
                "1",
                "--poll-timeout",
                "5",
                "--log-level",
                "WARNING",
            )
        )

    def alive(self) -> list[WorkerProcess]:
        return [p for p in self.procs if p.process.poll() is None]

    # -- the run ---------------------------------------------------------------------------

    def run(self, duration: float, min_failovers: int = 0) -> Report:
        """Run for ``duration`` seconds of random events, then at least ``min_failovers``
        failovers in all (those the draw left out come at the end, before the drain: on a
        loaded machine a failover takes long enough for the draw to fit in only one)."""
        started = time.monotonic()
        for _ in range(self.size):
            self.start_worker()
        producer = threading.Thread(target=self._produce, daemon=True)
        sampler = threading.Thread(target=self._sample, daemon=True)
        flooder = threading.Thread(target=self._flood_now_and_then, daemon=True)
        producer.start()
        sampler.start()
        if self.notify_flood:
            flooder.start()
        deadline = started + duration
        while time.monotonic() < deadline:
            time.sleep(self.random.uniform(1.0, 3.0))
            self._event()
            while len(self.alive()) < self.size:
                self.start_worker()
        while self.failover is not None and self.report.failovers < min_failovers:
            time.sleep(1.0)
            self._fail_over()
        self._stop.set()
        producer.join()
        if self.notify_flood:
            flooder.join()
        self._drain()
        sampler.join()
        for proc in self.alive():
            proc.signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(30)
        self._check()
        self.report.seconds = round(time.monotonic() - started, 1)
        for proc in self.procs:
            proc.close()
        return self.report

    def _event(self) -> None:
        choices = ["sigkill", "sigkill", "sigterm"]
        if self.restart is not None:
            choices.append("restart")
        if self.outage is not None:
            choices.append("outage")
        if self.contract_events:
            choices += ["stall", "block_heartbeat"]
        if self.failover is not None:
            choices += ["failover", "failover"]
        kind = self.random.choice(choices)
        victims = self.alive()
        if kind == "stall" and victims:
            self._stall(self._long_runner(victims) or self.random.choice(victims))
        elif kind == "block_heartbeat" and victims:
            self._block_heartbeat(self.random.choice(victims))
        elif kind in ("sigkill", "sigterm") and victims:
            victim = self.random.choice(victims)
            if kind == "sigkill":
                self.killed_pids.add(victim.pid)
                victim.signal(signal.SIGKILL)
                self.report.sigkills += 1
            else:
                self.stopped_pids.add(victim.pid)
                victim.signal(signal.SIGTERM)
                self.report.sigterms += 1
                victim.wait(30)
        elif kind == "restart" and self.restart is not None:
            self.restart()
            self.report.restarts += 1
        elif kind == "outage" and self.outage is not None:
            self.outage(self.lease * 2)
            self.report.outages += 1
        elif kind == "failover":
            self._fail_over()

    def _fail_over(self) -> None:
        assert self.failover is not None
        killed_at = time.time()
        self.failover()
        self.failover_windows.append((killed_at, time.time()))
        self.report.failovers += 1

    def _db_now(self) -> float:
        with connect(self.dsn) as conn:
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8 AS t")
            return float(row.fetchall()[0]["t"])

    def _long_runner(self, victims: list[WorkerProcess]) -> WorkerProcess | None:
        """A worker running one of the long (8-12 s) tasks, which outlive a stall: freezing
        it is what can make two executions of one lock_id overlap (F21)."""
        with connect(self.dsn) as conn:
            pids = {
                row["pid"]
                for row in conn.execute(
                    "SELECT r.pid FROM crash_runs r JOIN pgqueue.task t "
                    "ON t.id = r.task_id AND t.attempts = r.attempt "
                    "WHERE t.status = 5 AND (t.kwargs->>'seconds')::float8 >= 8"
                ).fetchall()
            }
        runners = [victim for victim in victims if victim.pid in pids]
        return self.random.choice(runners) if runners else None

    def _stall(self, victim: WorkerProcess) -> None:
        """Freeze ``victim`` (SIGSTOP) for twice the lease, then let it run on (SIGCONT)."""
        self.stalled_pids.add(victim.pid)
        frozen_at = self._db_now()
        victim.signal(signal.SIGSTOP)
        try:
            time.sleep(self.lease * 2)
        finally:
            victim.signal(signal.SIGCONT)
        self.frozen.setdefault(victim.pid, []).append((frozen_at, self._db_now()))
        self.report.stalls += 1

    def _block_heartbeat(self, victim: WorkerProcess) -> None:
        """Hold ``victim``'s registry row (``FOR UPDATE``) in an open transaction for twice the
        lease, as an operator's forgotten session would."""
        with connect(self.dsn, autocommit=False) as conn:
            rows = conn.execute(
                "SELECT id FROM pgqueue.worker WHERE pid = %s AND stopped_at IS NULL FOR UPDATE",
                (victim.pid,),
            ).fetchall()
            if rows:
                time.sleep(self.lease * 2)
                self.report.blocked_heartbeats += 1
            conn.rollback()

    def _flood_now_and_then(self) -> None:
        """Flood the NOTIFY queue every 2-6 s until the run stops."""
        while not self._stop.wait(self.flood_random.uniform(2.0, 6.0)):
            self._flood()

    def _flood(self) -> None:
        """Fill the NOTIFY queue behind a listener idle in a transaction, hold it full for
        twice the lease (the producer keeps queueing), end that transaction, and check that
        the queue drains (invariant 7)."""
        with connect(self.dsn) as holder, connect(self.dsn) as sender:
            holder.execute("LISTEN chaos_flood")
            holder.execute("BEGIN")
            holder.execute("SELECT 1")  # idle in a transaction: reads no notifications
            try:
                for _ in range(NOTIFY_QUEUE_PAGES):
                    if self._notify_usage(sender) >= 0.8:
                        break
                    sender.execute(FLOOD_BATCH)
                for _ in range(NOTIFY_QUEUE_PAGES):
                    sender.execute(FLOOD_PAGE)
            except psycopg.errors.ProgramLimitExceeded:  # "too many notifications": full
                pass
            usage = self._notify_usage(sender)
            self.report.worst_notify_usage = max(self.report.worst_notify_usage, usage)
            self.report.notify_floods += 1
            self._flooded.set()
            try:
                time.sleep(self.lease * 2)
            finally:
                self._flooded.clear()
                holder.execute("ROLLBACK")
                holder.close()  # its backend ends: the queue's tail moves on
            deadline = time.monotonic() + FLOOD_DRAIN_TIMEOUT
            while self._notify_usage(sender) >= 0.5:
                if time.monotonic() > deadline:
                    self.report.violations.append(
                        f"the NOTIFY queue stayed {self._notify_usage(sender):.0%} full "
                        f"{FLOOD_DRAIN_TIMEOUT:.0f}s after its holder's transaction ended"
                    )
                    break
                time.sleep(0.2)

    @staticmethod
    def _notify_usage(conn: psycopg.Connection[dict[str, Any]]) -> float:
        row = conn.execute(NOTIFY_QUEUE_USAGE).fetchone()
        return 0.0 if row is None else float(row["usage"])

    def _produce(self) -> None:
        with TaskBackend(self.dsn, task_paths=[CRASH_JOBS]) as client:
            while not self._stop.is_set():
                key = f"k{self.task_random.randrange(10**9)}"
                if self.task_random.random() < 0.2:
                    key = f"shared{self.task_random.randrange(5)}"  # contended lock ids
                seconds = round(self.task_random.uniform(0, 1), 2)
                if self.contract_events and self.task_random.random() < 0.03:
                    seconds = round(self.task_random.uniform(8, 12), 2)  # outlives a stall
                flooded = self._flooded.is_set()
                try:
                    task_id = client.queue_task("tracked", key=key, seconds=seconds)
                except Exception as exc:  # the server is restarting: try again shortly
                    if not self._server_trouble(exc):
                        self.report.enqueue_failures += 1
                        self.report.violations.append(f"enqueue failed: {exc!r}"[:300])
                    time.sleep(0.2)
                    continue
                if task_id is None:
                    self.report.duplicates_refused += 1
                else:
                    self.task_ids.append(task_id)
                    if flooded and self._flooded.is_set():
                        self.report.queued_while_flooded += 1
                time.sleep(self.task_random.uniform(0, 0.05))

    def _server_trouble(self, exc: Exception) -> bool:
        """Whether an enqueue failure is explained by a restart or outage of the server (a
        connection error in a run that has them); any other failure breaks invariant 6."""
        restarts = self.restart is not None or self.outage is not None or self.failover is not None
        return restarts and isinstance(exc, (psycopg.OperationalError, ConnectionFailed))

    def _sample(self) -> None:
        grace = self.lease / 4 + STUCK_SLACK
        while not self._drained.is_set():
            try:
                with connect(self.dsn) as conn:
                    stuck = conn.execute(STUCK_SQL, {"grace": grace}).fetchall()
                    doubled = conn.execute(DOUBLE_LOCK_SQL).fetchall()
            except Exception:  # the server is restarting
                time.sleep(0.5)
                continue
            for row in stuck:
                self.report.violations.append(f"STARTED without live owner: {row['id']}")
            for row in doubled:
                self.report.violations.append(f"two live tasks hold lock {row['lock_id']}")
            time.sleep(0.5)

    def _drain(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with connect(self.dsn) as conn:
                live = conn.execute(
                    "SELECT count(*) AS n FROM pgqueue.task WHERE status IN (4, 5, 6)"
                ).fetchone()
            if live is not None and live["n"] == 0:
                break
            time.sleep(0.5)
        self._drained.set()

    # -- the invariants --------------------------------------------------------------------

    def _check(self) -> None:
        report = self.report
        with connect(self.dsn) as conn:
            tasks = conn.execute(
                "SELECT id::text AS id, status, attempts, result FROM pgqueue.task"
            ).fetchall()
            runs = conn.execute(
                "SELECT task_id::text AS task_id, attempt, pid, "
                "extract(epoch FROM at)::float8 AS started FROM crash_runs ORDER BY at"
            ).fetchall()
            doubled = conn.execute(DOUBLE_LOCK_SQL).fetchall()
            lock_runs = conn.execute(LOCK_RUNS_SQL).fetchall()
        self._check_overlaps(lock_runs)
        report.tasks = len(tasks)
        report.runs = len(runs)
        for task in tasks:
            name = states.status_string(task["status"])
            report.states[name] = report.states.get(name, 0) + 1
            if task["status"] not in states.READY_STATES:
                report.violations.append(f"task {task['id']} ended {name}, not terminal")
        if set(self.task_ids) - {t["id"] for t in tasks}:
            report.violations.append("queued tasks are missing from the table")
        for row in doubled:
            report.violations.append(f"two live tasks hold lock {row['lock_id']}")
        by_task: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            by_task.setdefault(run["task_id"], []).append(run)
        for task_id, task_runs in by_task.items():
            for earlier in task_runs[:-1]:
                if earlier["pid"] in self.killed_pids:
                    report.reruns_after_kill += 1
                elif earlier["pid"] in self.stopped_pids:
                    report.reruns_after_giveback += 1
                elif self._frozen_during(earlier):
                    report.reruns_after_stall += 1
                elif self._failover_during(earlier):
                    report.reruns_after_failover += 1
                else:
                    report.violations.append(
                        f"task {task_id} ran again after attempt {earlier['attempt']} although "
                        f"its worker (pid {earlier['pid']}) neither died nor gave it back"
                    )
        for task in tasks:
            if task["status"] == states.SUCCESS:
                last = by_task.get(task["id"], [{}])[-1]
                if task["result"]["attempt"] != last.get("attempt"):
                    report.violations.append(
                        f"task {task['id']}: SUCCESS of attempt {task['result']['attempt']} "
                        f"but its last run was attempt {last.get('attempt')}"
                    )

    def _frozen_during(self, run: dict[str, Any]) -> bool:
        """Whether ``run`` was under way when its process was frozen past its lease."""
        return (
            any(run["started"] <= resumed for _, resumed in self.frozen.get(run["pid"], []))
            and run["pid"] in self.stalled_pids
        )

    def _failover_during(self, run: dict[str, Any]) -> bool:
        """Whether ``run`` started before a failover was over: its claim or outcome may have
        died with the primary (a commit the worker never heard back about), or its worker's
        heartbeats lapsed past the lease in the outage and the rescue ran it again."""
        return any(run["started"] <= over for _, over in self.failover_windows)

    def _running(self, run: dict[str, Any]) -> list[tuple[float, float]]:
        """The stretches in which ``run`` really executed: its interval less the time its
        process was frozen."""
        pieces = [(run["started"], run["ended"])]
        for frozen_from, resumed in self.frozen.get(run["pid"], []):
            cut: list[tuple[float, float]] = []
            for start, end in pieces:
                if resumed <= start or frozen_from >= end:
                    cut.append((start, end))
                    continue
                if start < frozen_from:
                    cut.append((start, frozen_from))
                if resumed < end:
                    cut.append((resumed, end))
            pieces = cut
        return pieces

    def _check_overlaps(self, lock_runs: list[dict[str, Any]]) -> None:
        """Invariant 5: executions of one lock_id overlap by at most one heartbeat interval."""
        if not self.contract_events:
            return
        bound = self.lease / 4 + OVERLAP_SLACK
        by_lock: dict[str, list[dict[str, Any]]] = {}
        for run in lock_runs:
            by_lock.setdefault(run["lock_id"], []).append(run)
        for runs in by_lock.values():
            for i, first in enumerate(runs):
                for second in runs[i + 1 :]:
                    overlap = sum(
                        max(0.0, min(e1, e2) - max(s1, s2))
                        for s1, e1 in self._running(first)
                        for s2, e2 in self._running(second)
                    )
                    self.report.worst_overlap = max(self.report.worst_overlap, round(overlap, 2))
                    if overlap > bound:
                        self.report.violations.append(
                            f"executions of task {first['task_id']} attempt {first['attempt']} "
                            f"and task {second['task_id']} attempt {second['attempt']} (one "
                            f"lock_id) overlapped {overlap:.1f}s, more than {bound:.1f}s"
                        )


def own_server(
    notify_queue_pages: int | None = None,
) -> tuple[str, Callable[[], None], Callable[[float], None], Callable[[], None]]:
    """An embedded server in a temporary directory, with ``max_notify_queue_pages`` set to
    ``notify_queue_pages`` when given (PostgreSQL 17+): (dsn, restart, outage, stop)."""
    settings = {"max_connections": "300"}
    if notify_queue_pages is not None:
        settings["max_notify_queue_pages"] = str(notify_queue_pages)
    server = EmbeddedPostgres(
        Path(tempfile.mkdtemp(prefix="pgqueue-chaos-")) / "pgdata", delete=True, settings=settings
    )
    with connect(server.dsn) as conn:
        conn.execute(f"CREATE DATABASE {quote_ident('chaos')}")
    dsn = make_conninfo(server.dsn, dbname="chaos")

    def outage(seconds: float) -> None:
        server._pg_ctl(["-w", "-m", "fast", "stop"])
        time.sleep(seconds)
        server._pg_ctl(["-w", "restart"])
        server._refresh()

    return dsn, server.restart, outage, server.stop


def replicated_servers() -> tuple[str, Callable[[], None], Callable[[], None]]:
    """A primary and a synchronous standby with a migrated database ``chaos``: (the
    multi-host DSN, one failover, stop)."""
    pair = ReplicatedPair(synchronous=True)
    try:
        pair.create_database("chaos")
        migrate(pair.dsn("chaos"), "pgqueue")
    except BaseException:
        pair.stop()
        raise
    return pair.both("chaos"), pair.failover, pair.stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of chaos")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--lease", type=float, default=2.0, help="worker lease, seconds")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--dsn", default=None, help="use this (migrated) database instead")
    parser.add_argument(
        "--contract-events",
        action="store_true",
        help="also freeze workers past their lease and block their heartbeats (issue 12)",
    )
    parser.add_argument(
        "--failovers",
        action="store_true",
        help="run on a primary and a synchronous standby and fail over again and again",
    )
    parser.add_argument(
        "--notify-flood",
        action="store_true",
        help="also fill the NOTIFY queue now and then (F27); needs the run's own server",
    )
    args = parser.parse_args(argv)
    if args.notify_flood and args.dsn:
        parser.error("--notify-flood needs the run's own server (its NOTIFY queue is made small)")
    if args.failovers and (args.dsn or args.notify_flood):
        parser.error("--failovers needs the run's own servers and no --notify-flood")
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)  # expected during restarts
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    stop: Callable[[], None] = lambda: None  # noqa: E731
    restart: Callable[[], None] | None = None
    outage: Callable[[float], None] | None = None
    failover: Callable[[], None] | None = None
    if args.dsn:
        dsn = args.dsn
    elif args.failovers:
        dsn, failover, stop = replicated_servers()
    else:
        dsn, restart, outage, stop = own_server(NOTIFY_QUEUE_PAGES if args.notify_flood else None)
        migrate(dsn, "pgqueue")
    try:
        make_runs_table(dsn)
        chaos = Chaos(
            dsn,
            workers=args.workers,
            lease=args.lease,
            restart=restart,
            outage=outage,
            seed=seed,
            contract_events=args.contract_events,
            notify_flood=args.notify_flood,
            failover=failover,
        )
        report = chaos.run(args.duration)
    finally:
        stop()
    for violation in report.violations[:20]:
        print("VIOLATION:", violation, file=sys.stderr)
    print(json.dumps({"seed": seed, **asdict(report)}))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())

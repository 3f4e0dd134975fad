"""Rescue of tasks whose worker died: real worker processes, real SIGKILL/SIGSTOP, short leases.

F01 killed worker, F02 reused identity / pruned row, F03 stale task holding its lock, F04 no
premature rescue of a GIL-holding task, the zombie's late finish fenced out, F11 concurrent
rescue sweeps without deadlock.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from pgqueue import TaskBackend, states
from pgqueue._db import connect
from pgqueue._rescuer import rescue_lost_tasks
from pgqueue._retry import ExponentialBackoff
from pgqueue._store import Store
from tests.support import crash as crash_support
from tests.support.crash import (
    CRASH_JOBS,
    live_workers,
    runs,
    task_row,
    wait_status,
    wait_until,
)
from tests.support.fixtures import sql

runs_dsn = crash_support.runs_dsn
client_jobs = crash_support.client_jobs
procs = crash_support.procs

LEASE = 2.0


def running_pid(dsn: str, task_id: str) -> int:
    """The pid of the process running the task's current attempt, once it has started."""
    return wait_until(lambda: (r := runs(dsn, task_id)) and r[-1]["pid"], 20, "the task to run")


@pytest.mark.slow
def test_killed_worker_task_is_rescued_within_lease(runs_dsn: str, client: Any, procs: Any) -> None:
    """F01: SIGKILL a worker mid-task; within the lease the task leaves STARTED, is retried by
    the surviving worker, and its lock_id stays held until it finishes."""
    for _ in range(2):
        procs(runs_dsn, "--lease", str(LEASE))
    call = {"key": "k1", "seconds": 60, "first_only": True}
    task_id = client.queue_task("tracked", **call)
    victim = running_pid(runs_dsn, task_id)
    assert task_row(runs_dsn, task_id)["status"] == states.STARTED
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    row = wait_status(runs_dsn, task_id, {states.RETRY, states.SUCCESS}, timeout=LEASE * 4)
    took = time.monotonic() - killed_at
    # lease + one rescue interval (lease/4) after the last heartbeat, with slack for a busy box
    assert took < LEASE * 3, took
    assert row["attempts"] == 1 or row["status"] == states.SUCCESS
    if row["status"] == states.RETRY:
        assert "worker lost" in row["error"]
        # the lock_id is still held while the task waits for its retry
        assert client.queue_task("tracked", **call) is None
    done = wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=20)
    assert done["attempts"] == 2
    assert done["result"]["attempt"] == 2
    assert [r["attempt"] for r in runs(runs_dsn, task_id)] == [1, 2]
    assert runs(runs_dsn, task_id)[1]["pid"] != victim
    assert client.queue_task("tracked", **call) is not None  # lock released at the end


def dead_started_task(dsn: str, client: TaskBackend, worker_id: str, **kwargs: Any) -> str:
    """Queue a task and make it look claimed by ``worker_id`` (attempt 1)."""
    task_id = client.queue_task("tracked", **kwargs)
    assert task_id is not None
    sql(
        dsn,
        "UPDATE pgqueue.task SET status = 5, attempts = 1, worker = %s, time_started = now() "
        "WHERE id = %s",
        (worker_id, task_id),
    )
    return task_id


def test_pruned_row_and_reused_pid_still_rescued(
    runs_dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """F02: a dead worker whose registry row was pruned, and one whose hostname and pid are
    those of the live worker (pid reuse): both dead workers' tasks are rescued; the live
    worker's identity differs, so its own work is never confused with theirs."""
    handle = start_worker(task_paths=[CRASH_JOBS], lease=LEASE)
    live = wait_until(lambda: live_workers(runs_dsn), 10, "the worker to register")[0]
    pruned = dead_started_task(runs_dsn, client, "host:4242:gone", key="pruned")
    sql(
        runs_dsn,
        "INSERT INTO pgqueue.worker (id, hostname, pid, queues, backlog, lease_seconds, "
        "heartbeat_at) VALUES ('same-host-same-pid', %s, %s, '{tasks}', 1, 2, "
        "now() - interval '1 minute')",
        (live["hostname"], live["pid"]),
    )
    reused = dead_started_task(runs_dsn, client, "same-host-same-pid", key="reused")
    for task_id in (pruned, reused):
        row = wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=LEASE * 4)
        assert row["attempts"] == 2
        assert row["worker"] == handle.worker.id


@pytest.mark.slow
def test_stale_task_holding_the_only_slot_and_lock_is_rescued(
    runs_dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """F03: a dead worker's task holds its lock_id (concurrency 1 for that key) and the live
    worker has one slot; the task is still rescued after the lease and finishes."""
    sql(
        runs_dsn,
        "INSERT INTO pgqueue.worker (id, hostname, pid, queues, backlog, lease_seconds) "
        "VALUES ('dead', 'h', 1, '{tasks}', 1, %s)",
        (LEASE,),
    )
    task_id = dead_started_task(runs_dsn, client, "dead", key="only")
    assert client.queue_task("tracked", key="only") is None  # the lock is taken
    start_worker(task_paths=[CRASH_JOBS], lease=LEASE, backlog=1)
    row = wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=LEASE * 5)
    assert row["attempts"] == 2
    assert client.queue_task("tracked", key="only") is not None


@pytest.mark.slow
def test_gil_holding_task_is_not_rescued(runs_dsn: str, client: TaskBackend, procs: Any) -> None:
    """F04: a task holding the GIL in bursts of ~1/3 lease for 2.5 leases is never rescued
    by the other worker: the heartbeat thread gets through between bursts."""
    lease = 3.0
    runner = procs(runs_dsn, "--lease", str(lease), "--backlog", "1")
    task_id = client.queue_task("hold_gil", seconds=lease * 2.5, burst=1.0)
    wait_until(lambda: runs(runs_dsn, task_id), 20, "the task to start")
    procs(runs_dsn, "--lease", str(lease))  # a would-be rescuer
    row = wait_status(runs_dsn, task_id, {states.SUCCESS, states.RETRY}, timeout=60)
    assert row["status"] == states.SUCCESS, row["error"]
    assert row["attempts"] == 1
    assert len(runs(runs_dsn, task_id)) == 1
    bursts = row["result"]
    assert max(bursts) > 0.7, bursts  # the job really held the GIL for long stretches
    assert runner.process.poll() is None


@pytest.mark.slow
def test_zombie_late_finish_is_rejected(runs_dsn: str, client: TaskBackend, procs: Any) -> None:
    """A worker frozen (SIGSTOP) past its lease is rescued; the task runs again elsewhere.
    When the zombie wakes (SIGCONT) and finishes, its write is fenced out: the row keeps the
    newer attempt's outcome."""
    zombie = procs(runs_dsn, "--lease", str(LEASE))
    task_id = client.queue_task("tracked", key="z", seconds=LEASE * 2.5, first_only=True)
    assert running_pid(runs_dsn, task_id) == zombie.pid
    zombie.signal(signal.SIGSTOP)
    try:
        procs(runs_dsn, "--lease", str(LEASE))
        done = wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=LEASE * 6)
    finally:
        zombie.signal(signal.SIGCONT)
    assert done["attempts"] == 2 and done["result"]["attempt"] == 2
    wait_until(lambda: "not recorded" in zombie.log, 20, "the zombie's rejected finish")
    again = task_row(runs_dsn, task_id)
    assert again["result"] == done["result"]
    assert again["attempts"] == 2
    assert again["time_ended"] == done["time_ended"]


@pytest.mark.slow
def test_concurrent_rescue_sweeps_never_deadlock(
    runs_dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """F11: six threads sweep 1500 lost tasks in small batches while two workers claim and
    finish 300 short tasks: no deadlock, each lost task rescued exactly once, every short
    task SUCCESS."""
    short = [client.queue_task("flaky", failures=0) for _ in range(300)]
    for _ in range(2):  # their own rescue sweeps come every 7.5 s (lease/4): after this test's
        start_worker(task_paths=[CRASH_JOBS], lease=30.0, backlog=4)
    wait_until(lambda: len(live_workers(runs_dsn)) == 2, 10, "two workers")
    sql(
        runs_dsn,
        "INSERT INTO pgqueue.task (name, status, attempts, worker, time_started) "
        "SELECT 'tracked', 5, 1, 'dead-' || (i % 7), now() FROM generate_series(1, 1500) i",
    )
    store = Store("pgqueue")
    rescued: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def sweep() -> None:
        try:
            with connect(runs_dsn) as conn:
                for _ in range(20):
                    rows = rescue_lost_tasks(conn, store, ExponentialBackoff(), limit=25)
                    with lock:
                        rescued.extend(r["id"] for r in rows)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(rescued) == len(set(rescued)) == 1500
    lost = sql(
        runs_dsn,
        "SELECT status, count(*) AS n FROM pgqueue.task "
        "WHERE worker LIKE 'dead-%%' GROUP BY status",
    )
    assert lost == [{"status": states.FAILURE, "n": 1500}]
    for task_id in short:
        assert wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=30)


def test_deleted_worker_row_registers_again(runs_dsn: str, start_worker: Any) -> None:
    """A live worker whose registry row is deleted (pruned by mistake) registers again on its
    next heartbeat and goes on working."""
    handle = start_worker(task_paths=[CRASH_JOBS], lease=1.0)
    wait_until(lambda: live_workers(runs_dsn), 10, "the worker to register")
    sql(runs_dsn, "DELETE FROM pgqueue.worker")
    again = wait_until(lambda: live_workers(runs_dsn), 10, "the worker to register again")
    assert again[0]["id"] == handle.worker.id
    assert handle.thread.is_alive()


def test_worker_marked_stopped_stops_claiming(runs_dsn: str, start_worker: Any) -> None:
    """A live worker whose row someone marks stopped (so its tasks count as lost) stops
    instead of claiming tasks that would be rescued from under it."""
    handle = start_worker(task_paths=[CRASH_JOBS], lease=1.0)
    wait_until(lambda: live_workers(runs_dsn), 10, "the worker to register")
    sql(runs_dsn, "UPDATE pgqueue.worker SET stopped_at = now()")
    handle.join(10)
    assert handle.exit_code == 0

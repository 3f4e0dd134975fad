"""``pgqueue-worker --processes N``: real child processes, real SIGKILL and SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo

from pgqueue import TaskBackend, states
from tests.support import crash as crash_support
from tests.support.crash import live_workers, runs, wait_status, wait_until
from tests.support.fixtures import sql

runs_dsn = crash_support.runs_dsn
procs = crash_support.procs
client_jobs = crash_support.client_jobs


@pytest.mark.slow
def test_supervisor_replaces_killed_children(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """SIGKILL one of two children: a new one replaces it and work goes on; SIGTERM to the
    supervisor stops every child cleanly and exits 0."""
    supervisor = procs(runs_dsn, "--processes", "2", "--lease", "2")
    first = wait_until(lambda: len(w := live_workers(runs_dsn)) == 2 and w, 30, "two children")
    victim = first[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: {w["pid"] for w in live_workers(runs_dsn)} - {victim, first[1]["pid"]},
        30,
        "a replacement child",
    )
    ids = [client.queue_task("tracked", key=f"t{i}") for i in range(10)]
    for task_id in ids:
        wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=30)
    assert "was killed by SIGKILL" in supervisor.log
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0, supervisor.log
    rows = sql(runs_dsn, "SELECT pid, stopped_at FROM pgqueue.worker")
    assert len(rows) == 3
    assert [r["pid"] for r in rows if r["stopped_at"] is None] == [victim]  # killed: no stop
    for pid in (r["pid"] for r in rows):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
def test_poison_task_fails_after_max_retries(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """F20: a task that SIGKILLs its worker every time ends FAILURE after 1 + max_retries (4)
    attempts, each lost worker counted; the supervisor keeps replacing the dead child."""
    supervisor = procs(runs_dsn, "--processes", "1", "--lease", "1")
    task_id = client.queue_task("poison")
    row = wait_status(runs_dsn, task_id, {states.FAILURE}, timeout=90)
    assert row["attempts"] == 4
    assert "worker lost" in row["error"] and "no retries left" in row["error"]
    assert [r["attempt"] for r in runs(runs_dsn, task_id)] == [1, 2, 3, 4]
    assert len({r["pid"] for r in runs(runs_dsn, task_id)}) == 4
    assert supervisor.process.poll() is None  # still supervising
    ok = client.queue_task("tracked", key="after")
    wait_status(runs_dsn, ok, {states.SUCCESS}, timeout=30)


@pytest.mark.slow
def test_recycling_with_big_arguments(runs_dsn: str, client: TaskBackend, procs: Any) -> None:
    """F19: max_tasks=1, backlog 4, 20 tasks with 8 MB arguments: all SUCCESS; each child
    claims only what it will start, exits after one task and is replaced."""
    blob = "x" * (8 * 1024 * 1024)
    ids = [client.queue_task("blob_size", blob=blob) for _ in range(20)]
    procs(runs_dsn, "--processes", "2", "--max-tasks", "1", "--backlog", "4", "--lease", "5")
    for task_id in ids:
        row = wait_status(runs_dsn, task_id, {states.SUCCESS, states.FAILURE}, timeout=120)
        assert (row["status"], row["result"], row["attempts"]) == (states.SUCCESS, len(blob), 1)
    claimed = sql(runs_dsn, "SELECT worker, count(*) AS n FROM pgqueue.task GROUP BY worker")
    assert len(claimed) == 20 and {r["n"] for r in claimed} == {1}


@pytest.mark.slow
def test_unfixable_child_exit_stops_the_supervisor(runs_dsn: str, procs: Any) -> None:
    """A child that cannot start because of its configuration (exit 2) is not restarted in a
    loop: the supervisor exits 2 too."""
    supervisor = procs(runs_dsn, "--processes", "2", "--task-paths", "no.such.module")
    assert supervisor.wait(30) == 2
    assert "a restart cannot fix that" in supervisor.log


@pytest.mark.slow
def test_crash_loop_backs_off(empty_dsn: str, procs: Any) -> None:
    """Children that die at once (here: database without pgqueue's schema, exit 4 is fatal;
    an unreachable database, exit 3, is retried with growing pauses)."""
    supervisor = procs("postgresql://nobody@127.0.0.1:1/none", "--processes", "1", "--lease", "2")
    # two replacements, however slowly a child starts on a loaded machine (the pauses are the
    # point, not the start-up time)
    wait_until(lambda: supervisor.log.count("replacing it in") >= 2, 60, "two replacements")
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0
    pauses = [
        float(line.rsplit("replacing it in ", 1)[1].rstrip("s"))
        for line in supervisor.log.splitlines()
        if "replacing it in" in line
    ]
    assert 2 <= len(pauses) <= 5, supervisor.log
    assert pauses == sorted(pauses) and pauses[1] == 2 * pauses[0]
    schema_less = procs(empty_dsn, "--processes", "1")
    assert schema_less.wait(30) == 4


@pytest.mark.slow
def test_ten_workers_restarting_at_once_stay_within_connection_formula(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """F12: ten worker processes with backlog 8 run tasks that use the database; all ten are
    killed at once and replaced; every task finishes, and connections never exceed the
    documented 6 per worker process plus one short-lived start/stop connection."""
    supervisor = procs(runs_dsn, "--processes", "10", "--backlog", "8", "--lease", "3")
    wait_until(lambda: len(live_workers(runs_dsn)) == 10, 60, "ten children")
    ids = [client.queue_task("tracked", key=f"c{i}", seconds=0.2) for i in range(400)]
    peak = 0

    def count() -> int:
        return sql(
            runs_dsn,
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()",
        )[0]["n"]

    wait_until(lambda: len(sql(runs_dsn, "SELECT 1 FROM crash_runs")) >= 50, 60, "some runs")
    for pid in [w["pid"] for w in live_workers(runs_dsn)]:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        peak = max(peak, count())
        done = sql(runs_dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE status = 1")[0]["n"]
        if done == len(ids):
            break
        time.sleep(0.2)
    assert done == len(ids), supervisor.log[-3000:]
    print(f"peak connections: {peak}")
    assert peak <= 10 * 7 + 3, peak  # + this test's client pool (2) and its counting query
    # each attempt ran once, except those running in a killed worker (rescued: attempt 2)
    twice = sql(
        runs_dsn,
        "SELECT task_id FROM crash_runs GROUP BY task_id, attempt HAVING count(*) > 1",
    )
    assert twice == []


@pytest.mark.slow
def test_hard_time_limit_kills_the_job_with_its_process(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """--hard-time-limits: a thread job ignoring its 1 s limit ends FAILURE within seconds
    (not after its 60 s); its worker process exits 75 at once and is replaced; a task running
    beside it in the same process is given back (its attempt not counted) and finishes
    normally. The overrunning task is settled by the rescue one lease after the process's last
    heartbeat, never while its thread could still run (F22), so it ends after the process."""
    supervisor = procs(
        runs_dsn, "--processes", "1", "--hard-time-limits", "--lease", "2", "--backlog", "2"
    )
    first = wait_until(lambda: live_workers(runs_dsn), 30, "the child")[0]
    beside = client.queue_task("tracked", key="beside", seconds=2.5)
    stuck = client.queue_task("overrun", seconds=60)
    row = wait_status(runs_dsn, stuck, {states.FAILURE, states.SUCCESS}, timeout=20)
    assert row["status"] == states.FAILURE
    assert row["error"].startswith(f"worker lost: {first['id']} stopped heartbeating"), row
    assert (row["time_ended"] - row["time_started"]).total_seconds() < 10
    with pytest.raises(ProcessLookupError):  # settled only once the thread's process is gone
        os.kill(first["pid"], 0)
    assert wait_status(runs_dsn, beside, {states.SUCCESS}, timeout=20)["attempts"] == 1
    wait_until(
        lambda: [w for w in live_workers(runs_dsn) if w["pid"] != first["pid"]],
        30,
        "a replacement child",
    )
    with pytest.raises(ProcessLookupError):
        os.kill(first["pid"], 0)
    assert "exited to kill a job past its time limit" in supervisor.log


@pytest.mark.slow
def test_children_get_the_dsn_from_the_environment_not_argv(runs_dsn: str, procs: Any) -> None:
    """The supervisor hands the DSN (with its password) to children in $PGQUEUE_DSN, so it
    never shows in a child's command line (``ps``)."""
    secret = make_conninfo(runs_dsn, password="s3cret-pw")  # trust auth ignores it
    supervisor = procs(runs_dsn, "--processes", "1", "--dsn", secret, "--lease", "5")
    child = wait_until(lambda: live_workers(runs_dsn), 30, "the child")[0]
    cmdline = Path(f"/proc/{child['pid']}/cmdline").read_bytes().split(b"\0")
    assert not any(b"s3cret-pw" in arg for arg in cmdline)
    assert b"--dsn" not in cmdline and b"--processes" not in cmdline
    assert b"--lease" in cmdline
    assert "s3cret-pw" not in supervisor.log


@pytest.mark.slow
def test_children_stop_when_the_supervisor_is_killed(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """SIGKILL the supervisor: its children (in sessions of their own, so no signal reaches
    them) notice their parent is gone, stop claiming and exit cleanly instead of running on
    as orphans nobody stops or replaces."""
    supervisor = procs(runs_dsn, "--processes", "2", "--lease", "2")
    children = wait_until(lambda: len(w := live_workers(runs_dsn)) == 2 and w, 30, "two children")
    supervisor.signal(signal.SIGKILL)
    supervisor.wait(10)
    wait_until(lambda: not live_workers(runs_dsn), 20, "the children to stop")
    for pid in (child["pid"] for child in children):
        wait_until(lambda pid=pid: not _alive(pid), 10, f"child {pid} to exit")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

"""Schedulers inside real workers (``--schedule-periodic``), on the real clock, for seconds:
a scheduler killed between its two writes (F15), overlapping slow ticks with two schedulers
(F14), and worker hosts whose clocks are 10 minutes off (F17, with libfaketime).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import pgqueue
from pgqueue import JobRegistry
from pgqueue._db import connect
from tests.support.fixtures import ROOT, bin_path, cli_env, sql
from tests.support.schedule_jobs import ANCHOR

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SECOND = timedelta(seconds=1)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def worker_process(dsn: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``worker_process(**env)``: ``pgqueue-worker --schedule-periodic`` on
    tests.support.schedule_jobs."""
    started: list[subprocess.Popen[str]] = []

    def start(**env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                bin_path("pgqueue-worker"),
                "--task-paths",
                "tests.support.schedule_jobs",
                "--schedule-periodic",
                "--lease",
                "5",
            ],
            env=cli_env(dsn, **env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the worker, wait for it, return its log."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def prune_finished(dsn: str, until: threading.Event) -> None:
    """Aggressive retention: delete finished tasks every 100 ms."""
    while not until.wait(0.1):
        sql(dsn, "DELETE FROM pgqueue.task WHERE status IN (1, 2, 3)")


def ticks_done(dsn: str) -> list[datetime]:
    """Every tick of every_second run (recorded by the job) or still waiting as a task."""
    rows = sql(
        dsn,
        """
        SELECT tick FROM test_ticks
        UNION ALL
        SELECT (meta_params->>'tick')::timestamptz FROM pgqueue.task
        WHERE name = 'every_second' AND status IN (4, 5, 6)
        ORDER BY 1
        """,
    )
    return [row["tick"] for row in rows]


@pytest.mark.slow
def test_scheduler_killed_between_advancing_and_queueing_loses_no_tick_F15(
    dsn: str, worker_process: Callable[..., subprocess.Popen[str]]
) -> None:
    """F15: a scheduler has moved next_tick on (its UPDATE done) and is inside the INSERT of
    the tick's task when it is SIGKILLed. Its transaction never commits: the tick is still
    due, and after a restart every tick from it on has exactly one task, while finished
    tasks are pruned every 100 ms."""
    sql(dsn, "CREATE TABLE test_ticks (tick timestamptz NOT NULL, task_id uuid NOT NULL)")
    blocker = connect(dsn, autocommit=False)
    blocker.execute("LOCK TABLE pgqueue.task IN SHARE ROW EXCLUSIVE MODE")  # stalls INSERTs
    victim = worker_process()
    stuck = wait_until(
        lambda: sql(
            dsn,
            """
            SELECT a.pid FROM pg_stat_activity a
            WHERE a.application_name = 'pgqueue-scheduler' AND a.wait_event_type = 'Lock'
              AND a.query LIKE '%%INSERT INTO "pgqueue".task%%'
              AND EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.granted
                          AND l.relation = 'pgqueue.schedule'::regclass
                          AND l.mode = 'RowExclusiveLock')
            """,
        ),
        30,
        "the scheduler to advance the schedule and block in the INSERT of the task",
    )
    victim.kill()
    victim.communicate(timeout=30)
    blocker.rollback()
    blocker.close()
    wait_until(
        lambda: not sql(dsn, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (stuck[0]["pid"],)),
        30,
        "the killed scheduler's backend to end",
    )
    row = sql(dsn, "SELECT * FROM pgqueue.schedule WHERE name = 'every_second'")[0]
    assert row["last_tick"] is None and row["runs_count"] == 0  # the advance was rolled back
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 0
    lost_tick = row["next_tick"]

    pruning = threading.Event()
    pruner = threading.Thread(target=prune_finished, args=(dsn, pruning), daemon=True)
    pruner.start()
    try:
        survivor = worker_process()
        wait_until(
            lambda: sql(dsn, "SELECT 1 FROM pgqueue.schedule WHERE runs_count >= %s", (8,)),
            30,
            "ticks after the restart",
        )
        stop(survivor)
    finally:
        pruning.set()
        pruner.join(10)
    last = sql(dsn, "SELECT last_tick FROM pgqueue.schedule WHERE name = 'every_second'")[0]
    ticks = ticks_done(dsn)
    assert ticks[0] == lost_tick  # the tick the killed scheduler was queueing
    expected = [
        lost_tick + k * SECOND for k in range(int((last["last_tick"] - lost_tick) / SECOND) + 1)
    ]
    assert ticks == expected  # every tick once: none missing, none doubled


@pytest.mark.slow
def test_slow_non_overlapping_job_skips_ticks_without_errors_F14(
    start_worker: Callable[..., Any], dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """F14: a job every 1 s that takes 2.5 s, can_overlap=False, two schedulers: the ticks
    that find it running are logged as skipped, no exception escapes, the workers go on."""
    caplog.set_level(logging.INFO, logger="pgqueue")

    @pgqueue.periodic_job(run_every=1, anchor=ANCHOR, can_overlap=False, name="slow")
    def slow(consumer: pgqueue.TaskConsumer) -> None:
        time.sleep(2.5)

    registry = JobRegistry([slow])
    workers = [start_worker(registry=registry, schedule_periodic=True) for _ in range(2)]
    most_live = 0
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        live = sql(dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE status IN (4, 5, 6)")
        most_live = max(most_live, live[0]["n"])
        time.sleep(0.1)
    row = sql(dsn, "SELECT * FROM pgqueue.schedule WHERE name = 'slow'")[0]
    assert all(w.thread.is_alive() for w in workers)
    for handle in workers:
        handle.stop()  # re-raises anything the worker raised
    assert most_live == 1
    assert row["runs_count"] >= 1 and row["skipped_count"] >= 2
    assert "skipped: its previous task is still live" in caplog.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.mark.slow
@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs libfaketime (apt-get install faketime)")
def test_hosts_ten_minutes_fast_and_slow_neither_start_early_nor_late_F17(
    dsn: str, worker_process: Callable[..., subprocess.Popen[str]]
) -> None:
    """F17: one worker host runs 10 minutes fast, another 10 minutes slow; both schedule.
    Every tick is queued once, never before it is due and not late, by the database clock;
    no task is rescued as if its worker had died."""
    sql(dsn, "CREATE TABLE test_ticks (tick timestamptz NOT NULL, task_id uuid NOT NULL)")
    skewed = [
        worker_process(
            LD_PRELOAD=str(LIBFAKETIME),
            FAKETIME=offset,
            FAKETIME_DONT_FAKE_MONOTONIC="1",
            FAKETIME_NO_CACHE="1",
        )
        for offset in ("+600", "-600")
    ]
    wait_until(
        lambda: sql(dsn, "SELECT 1 FROM pgqueue.schedule WHERE runs_count >= 6"),
        30,
        "six ticks",
    )
    logs = [stop(proc) for proc in skewed]
    tasks = sql(
        dsn,
        """
        SELECT (meta_params->>'tick')::timestamptz AS tick, time_queued, time_started, run_at,
               error, attempts
        FROM pgqueue.task WHERE name = 'every_second' ORDER BY 1
        """,
    )
    ticks = [task["tick"] for task in tasks]
    assert len(ticks) >= 6 and len(set(ticks)) == len(ticks)
    assert ticks == [ticks[0] + k * SECOND for k in range(len(ticks))]
    for task in tasks:
        assert task["time_queued"] >= task["tick"]  # never early
        # nor 10 minutes late (the bound leaves room for a loaded machine)
        assert task["time_queued"] - task["tick"] < timedelta(minutes=1)
        if task["time_started"] is not None:
            assert task["time_started"] >= task["run_at"]
        assert task["attempts"] <= 1 and not (task["error"] or "").startswith("worker lost")
    assert all("Traceback" not in log for log in logs)
    assert os.environ.get("LD_PRELOAD", "") == ""  # the skew was only in the workers

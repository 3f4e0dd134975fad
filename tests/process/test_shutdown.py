"""Graceful shutdown of real ``pgqueue-worker`` processes with real signals.

SIGTERM: stop claiming, let running tasks finish within ``--shutdown-timeout``, give back the
rest without using up their attempt, exit 0. A second SIGTERM gives back at once.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from pgqueue import TaskBackend, states
from tests.support import crash as crash_support
from tests.support.crash import runs, task_row, wait_until
from tests.support.fixtures import sql

runs_dsn = crash_support.runs_dsn
procs = crash_support.procs
client_jobs = crash_support.client_jobs


def started(dsn: str, ids: list[str]) -> bool:
    return all(task_row(dsn, i)["status"] == states.STARTED for i in ids)


@pytest.mark.slow
def test_sigterm_finishes_short_tasks_and_gives_back_long_ones(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """Short tasks in flight finish SUCCESS; a task still running after the shutdown timeout
    goes back to QUEUED with attempts 0 (the attempt is not counted); exit status 0."""
    worker = procs(runs_dsn, "--backlog", "3", "--shutdown-timeout", "2", "--lease", "5")
    short = [client.queue_task("tracked", key=f"s{i}", seconds=1.0) for i in range(2)]
    long = client.queue_task("tracked", key="long", seconds=60)
    assert long is not None
    wait_until(lambda: started(runs_dsn, [*short, long]), 20, "three tasks running")
    stopped_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0, worker.log
    assert time.monotonic() - stopped_at < 10  # grace of 2 s, then give back
    for task_id in short:
        assert task_row(runs_dsn, task_id)["status"] == states.SUCCESS
    row = task_row(runs_dsn, long)
    assert row["status"] == states.QUEUED
    assert row["attempts"] == 0
    assert "gave back unfinished task.tracked" in worker.log
    # another worker picks it up as a first attempt
    procs(runs_dsn, "--lease", "5")
    assert client.queue_task("tracked", key="long", seconds=60) is None  # lock still held
    wait_until(lambda: len(runs(runs_dsn, long)) == 2, 20, "the given-back task to rerun")
    assert [r["attempt"] for r in runs(runs_dsn, long)] == [1, 1]


@pytest.mark.slow
def test_second_sigterm_gives_back_at_once(runs_dsn: str, client: TaskBackend, procs: Any) -> None:
    """A second signal does not wait for the 60 s shutdown timeout."""
    worker = procs(runs_dsn, "--shutdown-timeout", "60", "--lease", "5")
    task_id = client.queue_task("tracked", key="x", seconds=60)
    wait_until(lambda: started(runs_dsn, [task_id]), 20, "the task to run")
    worker.signal(signal.SIGTERM)
    wait_until(lambda: "stopping: no more claims" in worker.log, 10, "the first signal")
    stopped_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0, worker.log
    assert time.monotonic() - stopped_at < 10
    row = task_row(runs_dsn, task_id)
    assert (row["status"], row["attempts"]) == (states.QUEUED, 0)


@pytest.mark.slow
def test_given_back_retry_keeps_earlier_attempts(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """A task on its second attempt (the first failed) goes back to RETRY with attempts 1
    and the first attempt's error."""
    slow = client.queue_task("tracked", key="r", seconds=60)
    sql(
        runs_dsn,
        "UPDATE pgqueue.task SET status = 4, attempts = 1, error = 'ValueError: earlier' "
        "WHERE id = %s",
        (slow,),
    )
    worker = procs(runs_dsn, "--shutdown-timeout", "0.5", "--lease", "5")
    wait_until(lambda: started(runs_dsn, [slow]), 20, "the second attempt to run")
    assert task_row(runs_dsn, slow)["attempts"] == 2
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    row = task_row(runs_dsn, slow)
    assert (row["status"], row["attempts"], row["error"]) == (
        states.RETRY,
        1,
        "ValueError: earlier",
    )

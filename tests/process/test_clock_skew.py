"""F17: worker hosts whose clocks are 10 minutes fast and 10 minutes slow.

Every time comparison uses the database's ``now()``: no false rescue, no early start of a
delayed task, no premature expiry. The workers run under :mod:`tests.support.skewed_worker`, which
shifts the host clock as Python sees it (``time.time``, ``datetime.now``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from pgqueue import TaskBackend, states
from tests.support import crash as crash_support
from tests.support.crash import WorkerProcess, task_row, wait_status

runs_dsn = crash_support.runs_dsn
client_jobs = crash_support.client_jobs

SKEW = 600


@pytest.fixture
def skewed(runs_dsn: str) -> Iterator[list[WorkerProcess]]:
    """Two worker processes: one host clock +10 min, the other -10 min."""
    workers = [
        WorkerProcess(
            runs_dsn,
            "--lease",
            "2",
            "--backlog",
            "2",
            env={"SKEW_SECONDS": str(offset)},
            program=[sys.executable, "-m", "tests.support.skewed_worker"],
        )
        for offset in (SKEW, -SKEW)
    ]
    yield workers
    for worker in workers:
        worker.close()


@pytest.mark.slow
def test_skewed_worker_clocks_change_nothing(
    runs_dsn: str, client: TaskBackend, skewed: list[WorkerProcess]
) -> None:
    # the skew is real: both workers' hosts report clocks about 10 minutes off
    probes = [client.queue_task("host_clock", seconds=1) for _ in range(4)]
    clocks = [wait_status(runs_dsn, t, {states.SUCCESS}, 20) for t in probes]
    offsets = {round((row["result"] - time.time()) / SKEW) for row in clocks}
    assert offsets == {1, -1}, offsets
    # long tasks on both: never rescued (a lease of 2 s, 10 minutes of skew)
    long = [client.queue_task("tracked", key=f"l{i}", seconds=5) for i in range(2)]
    # a delayed task does not start early; a task expiring in 30 s is not revoked
    delayed = client.queue_task("host_clock", countdown=3)
    expiring = client.queue_task("host_clock", expiry=30)
    for task_id in [*long, delayed, expiring]:
        row = wait_status(runs_dsn, task_id, {states.SUCCESS, states.RETRY, states.REVOKED}, 30)
        assert row["status"] == states.SUCCESS, row["error"]
        assert row["attempts"] == 1
    row = task_row(runs_dsn, delayed)
    assert (row["time_started"] - row["time_queued"]).total_seconds() >= 3
    assert {task_row(runs_dsn, t)["worker"] for t in long} <= {w["worker"] for w in clocks}

"""Fair turns between the queues one worker consumes (issue 13, F31)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import pgqueue
from pgqueue._errors import ConfigurationError
from tests.support.fixtures import run_cli, sql


def _queue_backlog(backend: pgqueue.TaskBackend, n: int) -> str:
    """``n`` older tasks in queue a, then one task in queue b; the id of b's task."""
    backend.queue_tasks("add", [{"a": i, "b": 0} for i in range(n)], queue="a")
    sql(backend.dsn, "UPDATE pgqueue.task SET run_at = run_at - interval '1 hour'")
    task_id = backend.queue_task("add", queue="b", a=-1, b=0)
    assert task_id is not None
    return task_id


def _started_after(dsn: str, task_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sql(dsn, "SELECT status FROM pgqueue.task WHERE id = %s", (task_id,))[0]["status"] != 6:
            return True
        time.sleep(0.02)
    return False


def test_fair_turns_start_a_new_queue_task_behind_a_large_backlog_at_once(  # F31
    dsn: str, backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    task_id = _queue_backlog(backend, 20_000)
    start_worker(queues=["a", "b"], backlog=1, queue_order="fair")
    assert _started_after(dsn, task_id, 1.0)


def test_strict_order_keeps_the_backlog_first(
    dsn: str, backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    task_id = _queue_backlog(backend, 20_000)
    start_worker(queues=["a", "b"], backlog=1)  # strict by default, as before
    assert not _started_after(dsn, task_id, 1.0)


def test_an_unknown_queue_order_is_refused(dsn: str) -> None:
    with pytest.raises(ConfigurationError, match="queue_order must be one of strict, fair"):
        pgqueue.Worker(dsn, ["tests.support.jobs"], queue_order="random")
    result = run_cli(
        ["pgqueue-worker", "--task-paths", "tests.support.jobs", "--queue-order", "x"], dsn
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: queue_order must be one of strict, fair, not 'x'"
    ]

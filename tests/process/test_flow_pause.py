"""Pausing and resuming queues (issue 13): fleet-wide, persisted, effective at once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

import pgqueue
from pgqueue._errors import UnknownQueue
from tests.support.fixtures import run_cli, sql


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` every 10 ms; the seconds it took, or fail naming ``what``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.01)
    return time.monotonic() - start


def _statuses(dsn: str, ids: list[str]) -> list[int]:
    rows = sql(dsn, "SELECT status FROM pgqueue.task WHERE id = ANY(%s::uuid[])", (ids,))
    return [row["status"] for row in rows]


def test_a_paused_queue_starts_nothing_on_any_worker_and_resume_restarts_it_at_once(
    dsn: str, backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    # poll_timeout 30 s: only the claim's own filter and the resume's notification can act
    # within the second the issue asks for.
    workers = [start_worker(queues=["tasks"], backlog=2) for _ in range(2)]
    running = backend.queue_task("sleep", seconds=1.5)
    assert running is not None
    _wait_until(lambda: _statuses(dsn, [running]) == [5], 10, "the first task starts")

    backend.pause_queue("tasks")
    waiting = [backend.queue_task("add", a=i, b=1) for i in range(4)]
    ids = [i for i in waiting if i is not None]
    time.sleep(1.0)
    assert _statuses(dsn, ids) == [6, 6, 6, 6]  # queued ones wait, on every worker
    done = backend.wait_for_task(running, timeout=10)
    assert done.status == pgqueue.states.SUCCESS  # the running one finished

    assert backend.resume_queue("tasks") is True
    took = _wait_until(lambda: set(_statuses(dsn, ids)) == {1}, 5, "resumed tasks run")
    assert took < 1.5
    for handle in workers:
        handle.stop()


def test_pause_is_persisted_and_shown_in_the_view(dsn: str, backend: pgqueue.TaskBackend) -> None:
    backend.queue_task("add", a=1, b=2)
    since = backend.pause_queue("tasks")
    assert backend.pause_queue("tasks") == since  # pausing again changes nothing
    rows = sql(dsn, "SELECT queue, paused, paused_at, waiting, started FROM pgqueue.queue_flow")
    assert rows == [
        {"queue": "tasks", "paused": True, "paused_at": since, "waiting": 1, "started": 0}
    ]
    assert backend.resume_queue("tasks") is True
    assert backend.resume_queue("tasks") is False
    assert sql(dsn, "SELECT paused FROM pgqueue.queue_flow") == [{"paused": False}]


def test_a_queue_only_a_worker_used_is_known(dsn: str, start_worker: Any) -> None:
    with pgqueue.TaskBackend(dsn) as client:
        handle = start_worker(queues=["quiet"])
        _wait_until(
            lambda: bool(sql(dsn, "SELECT 1 FROM pgqueue.worker WHERE 'quiet' = ANY(queues)")),
            10,
            "the worker registers",
        )
        client.pause_queue("quiet")
        handle.stop()
    assert sql(dsn, "SELECT queue FROM pgqueue.queue_setting") == [{"queue": "quiet"}]


def test_pausing_an_unknown_queue_is_refused_and_changes_nothing(
    dsn: str, backend: pgqueue.TaskBackend
) -> None:
    backend.queue_task("add", a=1, b=2)
    with pytest.raises(UnknownQueue, match="unknown queue 'taks'"):
        backend.pause_queue("taks")
    with pytest.raises(UnknownQueue):
        backend.resume_queue("taks")
    with pytest.raises(pgqueue.ConfigurationError, match="comma"):
        backend.pause_queue("a,b")
    assert sql(dsn, "SELECT * FROM pgqueue.queue_setting") == []


def test_plain_sql_resume_wakes_the_workers(
    dsn: str, backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    task_id = backend.queue_task("add", a=2, b=3)
    assert task_id is not None
    sql(dsn, "SELECT pgqueue.pause_queue('tasks')")
    start_worker(queues=["tasks"])
    time.sleep(0.5)
    assert _statuses(dsn, [task_id]) == [6]
    sql(dsn, "UPDATE pgqueue.queue_setting SET paused_at = NULL WHERE queue = 'tasks'")
    assert backend.wait_for_task(task_id, timeout=2).result == 5


def test_cli_pause_resume_and_status(dsn: str, backend: pgqueue.TaskBackend) -> None:
    backend.queue_task("add", a=1, b=2)
    paused = run_cli(["pgqueue", "pause", "tasks"], dsn)
    assert paused.returncode == 0, paused.stderr
    assert "queue 'tasks' is paused" in paused.stdout
    status = run_cli(["pgqueue", "status"], dsn)
    assert "paused queues: tasks" in status.stdout
    data = json.loads(run_cli(["pgqueue", "status", "--json"], dsn).stdout)
    assert [row["queue"] for row in data["flow"] if row["paused"]] == ["tasks"]
    resumed = run_cli(["pgqueue", "resume", "tasks"], dsn)
    assert resumed.returncode == 0 and "queue 'tasks' resumed" in resumed.stdout
    assert "paused queues" not in run_cli(["pgqueue", "status"], dsn).stdout

    unknown = run_cli(["pgqueue", "pause", "nope"], dsn)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: unknown queue 'nope': no task and no worker ever used it; check the name "
        "(pgqueue status lists the queues). Nothing was changed."
    ]

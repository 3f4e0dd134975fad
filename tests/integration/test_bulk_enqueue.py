"""Bulk enqueue: thousands of tasks per statement, lock_ids honoured, duplicates reported."""

from __future__ import annotations

from typing import Any

import pytest

import pgqueue
from pgqueue import Call
from pgqueue._db import connect
from pgqueue._errors import SerializationError, TaskNotAvailable
from tests.support.fixtures import sql


@pytest.mark.slow
def test_bulk_enqueue_of_10k_tasks_with_duplicates(dsn: str, backend: pgqueue.TaskBackend) -> None:
    live = [backend.queue_task("exclusive", key=f"k{n}") for n in range(0, 10_000, 20)]
    assert all(live)  # 500 live tasks hold the lock of every 20th key
    batch = [{"key": f"k{n}"} for n in range(10_000)]
    batch += [{"key": f"k{n}"} for n in range(1, 10_000, 40)]  # 250 repeats within the batch
    with connect(dsn) as listener:
        listener.execute("LISTEN tasks_task_queued")
        result = backend.queue_tasks("exclusive", batch)
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=5)]
    assert len(result.ids) == len(batch)
    expected_skips = list(range(0, 10_000, 20)) + list(range(10_000, len(batch)))
    assert result.skipped == expected_skips
    assert len(result.queued) == 9_500 and len(set(result.queued)) == 9_500
    assert payloads == ["*"]  # one notification for the statement
    counts = sql(dsn, "SELECT count(*) AS n, count(DISTINCT lock_id) AS locks FROM pgqueue.task")[0]
    assert counts == {"n": 10_000, "locks": 10_000}
    # ids line up with their inputs
    for position in (1, 777, 9_999):
        task = backend.get_task(result.ids[position] or "")
        assert task is not None and task.kwargs == batch[position]


def test_bulk_enqueue_of_overlapping_jobs_keeps_every_task(
    dsn: str, backend: pgqueue.TaskBackend
) -> None:
    result = backend.queue_tasks("add", [{"a": 1, "b": 1}] * 300, priority=4, countdown=60)
    assert len(set(result.queued)) == 300 and result.skipped == []
    row = sql(
        dsn,
        "SELECT count(*) AS n, min(priority) AS p, bool_and(run_at > now() + interval '50 s')"
        " AS later FROM pgqueue.task",
    )[0]
    assert row == {"n": 300, "p": 4, "later": True}


@pytest.mark.slow
def test_mixed_batch_uses_each_job_defaults_and_one_notification_per_queue(
    dsn: str,
) -> None:
    with pgqueue.TaskBackend(
        dsn, task_paths=["tests.support.jobs", "tests.support.child_jobs"]
    ) as backend:
        with connect(dsn) as listener:
            for channel in ("tasks_task_queued", "mail_task_queued", "reports_task_queued"):
                listener.execute(f"LISTEN {channel}")
            result = backend.queue_many(
                [
                    ("add", {"a": 1, "b": 2}),
                    Call("send_mail", {"to": "a@example.org"}),
                    Call("send_mail", {"to": "b@example.org"}, priority=1),
                    ("report", {"n": 3}),
                    Call("exclusive", {"key": "x"}),
                    Call("exclusive", {"key": "x"}),
                ]
            )
            heard = sorted((n.channel, n.payload) for n in listener.notifies(timeout=2))
        tasks = {t.id: t for t in backend.get_tasks(result.queued)}
    assert result.skipped == [5]
    summary = [(tasks[i].name, tasks[i].queue, tasks[i].priority) for i in result.queued]
    assert summary == [
        ("add", "tasks", 0),
        ("send_mail", "mail", 5),
        ("send_mail", "mail", 1),
        ("report", "reports", -1),
        ("exclusive", "tasks", 0),
    ]
    assert [channel for channel, _ in heard] == [
        "mail_task_queued",
        "reports_task_queued",
        "tasks_task_queued",
    ]
    assert dict(heard)["reports_task_queued"] == result.queued[3]  # alone in its queue: its id


def test_bad_input_in_a_batch_queues_nothing(dsn: str, backend: pgqueue.TaskBackend) -> None:
    with pytest.raises(SerializationError, match="argument 'b'"):
        backend.queue_tasks("add", [{"a": 1, "b": 2}, {"a": 1, "b": object()}])
    with pytest.raises(TaskNotAvailable):
        backend.queue_many([("add", {"a": 1, "b": 2}), ("nope", {})])
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 0}]
    empty = backend.queue_tasks("add", [])
    assert empty.ids == [] and empty.skipped == []


def test_bulk_queued_tasks_are_run_by_a_worker(
    backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    result = backend.queue_tasks("add", [{"a": n, "b": n} for n in range(100)])
    start_worker(backlog=8, poll_timeout=30.0)
    results = [backend.wait_for_task(i, timeout=30).result for i in result.queued]
    assert results == [2 * n for n in range(100)]

"""The shop's tests, written with pgqueue's pytest plugin."""

from __future__ import annotations

import pytest
from shop import jobs
from shop.orders import place_order


def test_an_order_queues_its_receipt(pgqueue_backend, pgqueue_tasks):
    place_order(pgqueue_backend, order_id=7, email="ann@example.com")
    task = pgqueue_tasks.assert_queued(jobs.send_receipt, order_id=7)
    assert task.kwargs == {"order_id": 7, "email": "ann@example.com"}
    pgqueue_tasks.assert_not_queued(jobs.send_receipt, order_id=8)
    with pytest.raises(AssertionError, match="found 0"):
        pgqueue_tasks.assert_queued("send_receipt", order_id=8)


def test_drain_runs_the_tasks_and_what_they_queue(pgqueue_backend, pgqueue_tasks):
    task_id = place_order(pgqueue_backend, order_id=7, email="ann@example.com")
    [done] = pgqueue_tasks.drain()
    assert done.id == task_id and done.status_string() == "SUCCESS"
    assert done.result == "receipt 7 to ann@example.com"
    assert jobs.SENT[task_id] == "ann@example.com"
    # The survey the receipt queued ran in the same drain.
    assert pgqueue_tasks.queued() == [] and jobs.SURVEYED == ["ann@example.com"]


def test_retries_and_failures_behave_as_in_production(pgqueue_backend, pgqueue_tasks):
    task_id = pgqueue_backend.queue_task("flaky_charge", order_id=1)
    pgqueue_tasks.drain()
    task = pgqueue_backend.get_task(task_id)
    assert task.status_string() == "SUCCESS" and task.attempts == 2


def test_locks_hold_as_in_production(pgqueue_backend, pgqueue_tasks):
    assert pgqueue_backend.queue_task("rebuild_index", shard=1)
    assert pgqueue_backend.queue_task("rebuild_index", shard=1) is None
    assert len(pgqueue_tasks.queued(jobs.rebuild_index)) == 1


def test_eager_mode_runs_jobs_at_enqueue(pgqueue_eager):
    task_id = place_order(pgqueue_eager, order_id=9, email="bob@example.com")
    assert pgqueue_eager.get_task(task_id).result == "receipt 9 to bob@example.com"


def test_each_test_gets_a_fresh_database(pgqueue_tasks):
    assert pgqueue_tasks.queued() == []

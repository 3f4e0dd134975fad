"""Unique windows and debounce (issue 13)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import pgqueue
from pgqueue._errors import ConfigurationError
from tests.support.fixtures import sql

FLOW_JOBS = "tests.support.flow_jobs"


@pytest.fixture
def client(dsn: str) -> Iterator[pgqueue.TaskBackend]:
    with pgqueue.TaskBackend(dsn, task_paths=[FLOW_JOBS]) as backend:
        yield backend


def test_a_copy_is_refused_for_unique_for_after_the_first_started(
    dsn: str, client: pgqueue.TaskBackend, start_worker: Any
) -> None:
    first = client.queue_task("once_a_while", key="k")
    assert first is not None
    assert client.queue_task("once_a_while", key="k") is None  # live: as can_overlap=False
    start_worker(task_paths=[FLOW_JOBS], queues=["flow"])
    assert client.wait_for_task(first, timeout=5).status == pgqueue.states.SUCCESS
    assert client.queue_task("once_a_while", key="k") is None  # finished, but in its window
    assert client.queue_many([pgqueue.Call("once_a_while", {"key": "k"})]).ids == [None]
    other = client.queue_task("once_a_while", key="other")  # another lock_id: not refused
    assert other is not None
    started = sql(dsn, "SELECT time_started FROM pgqueue.task WHERE id = %s", (first,))
    wait = 2.0 - (time.time() - started[0]["time_started"].timestamp())
    time.sleep(max(wait, 0) + 0.3)
    assert client.queue_task("once_a_while", key="k") is not None  # the window has passed


def test_debounce_moves_the_queued_copy_and_returns_its_id(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    first = client.queue_task("reindex", doc="d", debounce=5)
    assert first is not None
    run_at_1 = sql(dsn, "SELECT run_at - now() AS d FROM pgqueue.task")[0]["d"]
    assert 4.9 < run_at_1.total_seconds() <= 5
    time.sleep(0.2)
    again = client.queue_task("reindex", doc="d", debounce=30)
    assert again == first
    rows = sql(dsn, "SELECT id::text AS id, run_at - now() AS d FROM pgqueue.task")
    assert len(rows) == 1 and rows[0]["id"] == first
    assert 29.9 < rows[0]["d"].total_seconds() <= 30


def test_a_debounced_burst_runs_once_after_the_burst(
    dsn: str, client: pgqueue.TaskBackend, start_worker: Any
) -> None:
    start_worker(task_paths=[FLOW_JOBS], queues=["flow"], poll_timeout=0.1)
    ids = set()
    for _ in range(5):
        ids.add(client.queue_task("reindex", doc="burst", debounce=0.5))
        time.sleep(0.1)
    assert len(ids) == 1
    (task_id,) = ids
    assert task_id is not None
    done = client.wait_for_task(task_id, timeout=5)
    assert done.status == pgqueue.states.SUCCESS
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 1}]


@pytest.mark.parametrize("debounce", [0, -1, "soon", float("inf")])
def test_a_bad_debounce_queues_nothing(
    dsn: str, client: pgqueue.TaskBackend, debounce: Any
) -> None:
    with pytest.raises(ConfigurationError, match="debounce must be"):
        client.queue_task("reindex", doc="d", debounce=debounce)
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 0}]


def test_debounce_needs_a_lock_id_and_no_other_start_time(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    with pytest.raises(ConfigurationError, match="debounce needs a job that cannot overlap"):
        client.queue_task("free", n=1, debounce=1)
    with pytest.raises(ConfigurationError, match="not both"):
        client.queue_task("reindex", doc="d", debounce=1, countdown=3)
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 0}]


@pytest.mark.parametrize("window", [0, -1, "1m"])
def test_a_bad_unique_for_is_refused_when_the_job_is_defined(window: Any) -> None:
    with pytest.raises(ConfigurationError, match="unique_for"):

        @pgqueue.job(unique_for=window)
        def bad(consumer: pgqueue.TaskConsumer) -> None: ...

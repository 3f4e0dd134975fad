"""Rate limits (issue 13): per job and limit_key, and per queue; fleet-wide, database clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

import pgqueue
from pgqueue._errors import ConfigurationError
from tests.support.crash import wait_until
from tests.support.fixtures import sql

FLOW_JOBS = "tests.support.flow_jobs"


@pytest.fixture
def client(dsn: str) -> Iterator[pgqueue.TaskBackend]:
    with pgqueue.TaskBackend(dsn, task_paths=[FLOW_JOBS]) as backend:
        yield backend


def _most_in_a_window(starts: list[datetime], seconds: float) -> int:
    """The most starts within any window of ``seconds`` (each window opening at a start)."""
    starts = sorted(starts)
    window = timedelta(seconds=seconds)
    return max(sum(1 for s in starts[i:] if s - first < window) for i, first in enumerate(starts))


def _starts(dsn: str, where: str) -> dict[str, list[datetime]]:
    rows = sql(dsn, f"SELECT limit_key, time_started FROM pgqueue.task WHERE {where}")
    found: dict[str, list[datetime]] = defaultdict(list)
    for row in rows:
        found[row["limit_key"]].append(row["time_started"])
    return found


def _done(dsn: str) -> int:
    return int(sql(dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE status = 1")[0]["n"])


def test_no_window_holds_more_starts_than_the_rate_per_key(
    dsn: str, client: pgqueue.TaskBackend, start_worker: Any
) -> None:
    client.queue_many([pgqueue.Call("rated", kwargs={"tenant": "a"}) for _ in range(10)])
    client.queue_many([pgqueue.Call("rated", kwargs={"tenant": "b"}) for _ in range(4)])
    # poll_timeout 30 s: a held-back task starts when its window reopens, not at a poll.
    for _ in range(3):
        start_worker(task_paths=[FLOW_JOBS], queues=["rated"], backlog=4, poll_timeout=30.0)
    wait_until(lambda: _done(dsn) == 14, 20, "all 14 tasks finished")
    starts = _starts(dsn, "name = 'rated'")
    assert _most_in_a_window(starts["a"], 1.0) == 3  # several windows, none above the rate
    assert _most_in_a_window(starts["b"], 1.0) == 3
    span = max(starts["a"]) - min(starts["a"])
    assert timedelta(seconds=3) <= span < timedelta(seconds=6)  # 10 at 3/s: 3 windows
    assert sql(dsn, "SELECT DISTINCT scope FROM pgqueue.flow_start ORDER BY scope") == [
        {"scope": "job rated 'a'"},
        {"scope": "job rated 'b'"},
    ]


def test_a_queue_rate_set_at_run_time(
    dsn: str, client: pgqueue.TaskBackend, start_worker: Any
) -> None:
    client.queue_many([pgqueue.Call("free", kwargs={"n": n}) for n in range(8)])
    client.set_queue_limit("rated", rate=(4, 1.0))
    assert sql(dsn, "SELECT rate_count, rate_seconds FROM pgqueue.queue_flow") == [
        {"rate_count": 4, "rate_seconds": 1.0}
    ]
    start_worker(task_paths=[FLOW_JOBS], queues=["rated"], backlog=8, poll_timeout=30.0)
    wait_until(lambda: _done(dsn) == 8, 20, "all 8 tasks finished")
    starts = [t for ts in _starts(dsn, "name = 'free'").values() for t in ts]
    assert _most_in_a_window(starts, 1.0) == 4
    assert max(starts) - min(starts) >= timedelta(seconds=1)


@pytest.mark.parametrize("rate", [(0, 1.0), (-1, 1.0), (3, 0), (3, -1.0), (3,), "3/s", (True, 1)])
def test_a_bad_rate_is_refused(dsn: str, client: pgqueue.TaskBackend, rate: Any) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit must be"):

        @pgqueue.job(rate_limit=rate)
        def bad(consumer: pgqueue.TaskConsumer) -> None: ...

    client.queue_task("free", n=1)
    with pytest.raises(ConfigurationError, match="rate_limit must be"):
        client.set_queue_limit("rated", rate=rate)
    assert sql(dsn, "SELECT * FROM pgqueue.queue_setting") == []

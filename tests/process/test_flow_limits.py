"""Concurrency limits (issue 13): per job, per limit_key, per queue, enforced by the claim."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgqueue
from pgqueue._db import connect
from pgqueue._errors import ConfigurationError, UnknownQueue
from tests.support.crash import wait_until, worker_processes
from tests.support.fixtures import run_cli, sql

FLOW_JOBS = "tests.support.flow_jobs"


@pytest.fixture
def client(dsn: str) -> Iterator[pgqueue.TaskBackend]:
    with pgqueue.TaskBackend(dsn, task_paths=[FLOW_JOBS]) as backend:
        yield backend


class Sampler:
    """Reads the STARTED tasks per (job, limit_key) every 2 ms on its own connection; keeps
    the most seen at once."""

    def __init__(self, dsn: str, group: str) -> None:
        self.most: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._query = (
            f"SELECT {group} AS scope, count(*) AS n FROM pgqueue.task WHERE status = 5 "
            f"GROUP BY {group}"
        )
        self._conn = connect(dsn)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for row in self._conn.execute(self._query).fetchall():
                self.most[row["scope"]] = max(self.most[row["scope"]], row["n"])
            self.samples += 1
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._conn.close()


def _finished(dsn: str) -> int:
    return int(sql(dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE status = 1")[0]["n"])


def test_eight_workers_never_run_more_than_two_per_key(  # F29
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    # 8 processes with 4 slots each: 32 slots for 3 tenants of 2 slots each. The tasks are
    # short, so claims of many workers commit at the same moments all the time.
    calls = [
        pgqueue.Call("per_tenant", kwargs={"tenant": f"t{i % 3}", "seconds": 0.05})
        for i in range(90)
    ]
    client.queue_many(calls)
    sampler = Sampler(dsn, "name || '/' || limit_key")
    with worker_processes() as start:
        for _ in range(8):
            start(dsn, "--task-paths", FLOW_JOBS, "--queues", "flow", "--backlog", "4")
        wait_until(lambda: _finished(dsn) == 90, 60, "all 90 tasks finished")
    sampler.stop()
    assert sampler.samples > 100
    assert set(sampler.most) == {"per_tenant/t0", "per_tenant/t1", "per_tenant/t2"}
    assert max(sampler.most.values()) == 2, sampler.most  # never 3, and the limit was used
    workers = sql(dsn, "SELECT count(DISTINCT worker) AS n FROM pgqueue.task")[0]["n"]
    assert workers > 1


def test_a_job_limit_without_key_and_a_queue_limit(
    dsn: str, client: pgqueue.TaskBackend, start_worker: Any
) -> None:
    for _ in range(4):
        client.queue_task("one_at_a_time", seconds=0.1)
    for _ in range(12):
        client.queue_task("unlimited", seconds=0.1)
    client.set_queue_limit("flow", concurrency=3)
    assert sql(dsn, "SELECT concurrency FROM pgqueue.queue_flow WHERE queue = 'flow'") == [
        {"concurrency": 3}
    ]
    by_job = Sampler(dsn, "name")
    by_queue = Sampler(dsn, "queue")
    for _ in range(3):
        start_worker(task_paths=[FLOW_JOBS], queues=["flow"], backlog=4)
    wait_until(lambda: _finished(dsn) == 16, 30, "all 16 tasks finished")
    by_job.stop()
    by_queue.stop()
    assert by_job.most["one_at_a_time"] == 1
    assert by_queue.most["flow"] == 3


def test_a_held_back_task_waits_without_polling_and_starts_when_a_slot_frees(
    dsn: str, client: pgqueue.TaskBackend, start_worker: Any
) -> None:
    first = client.queue_task("one_at_a_time", seconds=0.5)
    second = client.queue_task("one_at_a_time", seconds=0.0)
    assert first and second
    start_worker(task_paths=[FLOW_JOBS], queues=["flow"], backlog=4, poll_timeout=30.0)
    done = client.wait_for_task(second, timeout=5)  # woken by the first one's end, not a poll
    assert done.status == pgqueue.states.SUCCESS
    first_task = client.get_task(first)
    assert first_task is not None and first_task.time_ended is not None
    assert done.time_started is not None and done.time_started >= first_task.time_ended


def test_limit_key_from_a_callable_is_stored(dsn: str, client: pgqueue.TaskBackend) -> None:
    client.queue_task("per_region", region="eu")
    client.queue_task("per_tenant", tenant="acme", seconds=0)
    rows = sql(dsn, "SELECT name, limit_key, concurrency FROM pgqueue.task ORDER BY name")
    assert rows == [
        {"name": "per_region", "limit_key": "region-eu", "concurrency": 3},
        {"name": "per_tenant", "limit_key": "acme", "concurrency": 2},
    ]


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "2"])
def test_a_bad_concurrency_is_refused_when_the_job_is_defined(limit: object) -> None:
    with pytest.raises(ConfigurationError, match="concurrency must be an int >= 1"):

        @pgqueue.job(concurrency=limit)  # type: ignore[arg-type]
        def bad(consumer: pgqueue.TaskConsumer) -> None: ...

    with pytest.raises(ConfigurationError, match="concurrency must be an int >= 1"):

        class Bad(pgqueue.Job):
            concurrency = limit  # type: ignore[assignment]


def test_a_bad_limit_key_is_refused_when_the_job_is_defined() -> None:
    with pytest.raises(ConfigurationError, match="limit_key must be the name of a kwarg"):

        @pgqueue.job(limit_key="")
        def bad(consumer: pgqueue.TaskConsumer) -> None: ...


def _raising(**kwargs: object) -> str:
    raise KeyError("tenant")


def _not_a_str(**kwargs: object) -> str:
    return 42  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("limit_key", "kwargs", "message"),
    [
        (_raising, {"tenant": "a"}, "its limit_key callable raised KeyError"),
        (_not_a_str, {"tenant": "a"}, "must return a str, not int"),
        ("tenant", {"tenant": ["a"]}, "must be a str or an int, not list"),
        ("region", {"tenant": "a"}, "has no argument 'region'"),
    ],
)
def test_a_bad_limit_key_value_queues_nothing(
    dsn: str, limit_key: Any, kwargs: dict[str, Any], message: str
) -> None:
    @pgqueue.job(concurrency=2, limit_key=limit_key)
    def keyed(consumer: pgqueue.TaskConsumer, tenant: Any) -> None: ...

    registry = pgqueue.JobRegistry([keyed])
    with pgqueue.TaskBackend(dsn, registry=registry) as backend:
        with pytest.raises(ConfigurationError, match=message):
            backend.queue_task("keyed", **kwargs)
        good = pgqueue.Call("keyed", kwargs={"tenant": "ok"} if limit_key == "tenant" else kwargs)
        bad = pgqueue.Call("keyed", kwargs=kwargs)
        with pytest.raises(ConfigurationError, match=message):
            backend.queue_many([good, bad])
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 0}]


def test_a_bad_queue_limit_is_refused_and_changes_nothing(
    dsn: str, client: pgqueue.TaskBackend
) -> None:
    client.queue_task("unlimited", seconds=0)
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ConfigurationError, match="concurrency must be an int >= 1"):
            client.set_queue_limit("flow", concurrency=bad)  # type: ignore[arg-type]
    with pytest.raises(UnknownQueue):
        client.set_queue_limit("flwo", concurrency=2)
    with pytest.raises(psycopg.errors.CheckViolation):
        sql(dsn, "SELECT pgqueue.set_queue_limit('flow', 0)")
    assert sql(dsn, "SELECT * FROM pgqueue.queue_setting") == []


def test_status_and_views_show_limits_and_their_use(dsn: str, client: pgqueue.TaskBackend) -> None:
    for _ in range(3):
        client.queue_task("per_tenant", tenant="acme", seconds=0)
    client.set_queue_limit("flow", concurrency=5, rate=(10, 2.5))
    assert sql(
        dsn, "SELECT name, limit_key, concurrency, started, waiting FROM pgqueue.flow_limits"
    ) == [{"name": "per_tenant", "limit_key": "acme", "concurrency": 2, "started": 0, "waiting": 3}]
    status = run_cli(["pgqueue", "status"], dsn)
    assert status.returncode == 0, status.stderr
    assert "Paused and limited queues" in status.stdout
    assert "Limited jobs" in status.stdout
    line = next(x for x in status.stdout.splitlines() if "per_tenant" in x and "acme" in x)
    cells = [cell.strip() for cell in line.split("│") if cell.strip()]
    assert cells[:4] == ["per_tenant", "acme", "2", "0"]  # concurrency 2, none started
    data = json.loads(run_cli(["pgqueue", "status", "--json"], dsn).stdout)
    assert data["flow"][0]["concurrency"] == 5 and data["flow"][0]["rate_count"] == 10
    assert data["limits"][0]["waiting"] == 3

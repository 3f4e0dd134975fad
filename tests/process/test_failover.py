"""Failover of real servers: a primary and a synchronous streaming standby, a worker and a
waiting client on a multi-host DSN with ``target_session_attrs=read-write``; the primary is
killed (SIGKILL, every process) in the middle of a drain and the standby promoted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pgqueue import TaskBackend, Worker, states
from pgqueue._schema import migrate
from pgqueue._task import Task
from tests.support.fixtures import WorkerThread
from tests.support.replication_support import ReplicatedPair

TASKS = 300
#: The jobs of the drain: each allows one retry (see the module).
FAILOVER_JOBS = "tests.support.failover_jobs"


@pytest.fixture
def pair() -> Iterator[ReplicatedPair]:
    started = ReplicatedPair(synchronous=True)
    try:
        started.create_database("queue")
        migrate(started.dsn("queue"), "pgqueue")
        yield started
    finally:
        started.stop()


def counts(dsn: str) -> dict[int, int]:
    with TaskBackend(dsn) as client, client.connection() as conn:
        rows = conn.execute("SELECT status, count(*) AS n FROM pgqueue.task GROUP BY 1")
        return {row["status"]: row["n"] for row in rows}


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_drain_survives_the_primary_killed_and_the_standby_promoted(
    pair: ReplicatedPair,
) -> None:
    both = pair.both("queue")
    client = TaskBackend(both, task_paths=[FAILOVER_JOBS])
    acknowledged = client.queue_tasks("nap", [{"seconds": 0.03} for _ in range(TASKS)]).queued
    last = acknowledged[-1]
    waited: list[Task | BaseException] = []

    def wait_last() -> None:
        try:
            waited.append(client.wait_for_task(last, timeout=75))
        except BaseException as exc:  # reported by the assertion below
            waited.append(exc)

    waiter = threading.Thread(target=wait_last)
    waiter.start()
    # lease 5 s: a task whose claim committed while its answer was lost (see FAILOVER_JOBS) is
    # rescued by this worker and retried within the deadline below
    worker = WorkerThread(
        Worker(both, task_paths=[FAILOVER_JOBS], backlog=4, poll_timeout=0.5, lease=5.0)
    )
    more: list[str] = []  # enqueued while the primary dies: only those that returned an id
    promoted = threading.Event()
    after_promotion: list[str] = []
    stop_enqueue = threading.Event()

    def enqueue() -> None:
        with TaskBackend(both, task_paths=[FAILOVER_JOBS]) as producer:
            while not stop_enqueue.is_set():
                try:
                    task_id = producer.queue_task("total", a=1, b=2)
                except Exception:  # the outage: not acknowledged, may or may not exist
                    time.sleep(0.05)
                    continue
                assert task_id is not None
                more.append(task_id)
                if promoted.is_set():
                    after_promotion.append(task_id)
                    if len(after_promotion) >= 20:
                        return
                time.sleep(0.01)

    producer = threading.Thread(target=enqueue)
    producer.start()
    try:
        deadline = time.monotonic() + 30
        while counts(both).get(states.SUCCESS, 0) < TASKS // 4:
            assert time.monotonic() < deadline, "the drain did not start"
            time.sleep(0.05)
        pair.kill_primary()
        killed_at = time.monotonic()
        time.sleep(1.0)  # an outage: the pools, listener and waiter find no writable host
        pair.promote()
        promoted.set()
        producer.join(30)
        assert len(after_promotion) >= 20, "no enqueue went through after the promotion"
        deadline = time.monotonic() + 45
        while True:
            done = counts(both)
            if done.get(states.SUCCESS, 0) >= TASKS + len(more) and len(done) == 1:
                break
            assert time.monotonic() < deadline, f"the drain did not complete: {done}"
            time.sleep(0.1)
        recovered_in = time.monotonic() - killed_at
        waiter.join(60)
    finally:
        stop_enqueue.set()
        worker.stop(30)
        client.close()
    assert len(waited) == 1 and isinstance(waited[0], Task), waited
    assert waited[0].status == states.SUCCESS
    with TaskBackend(both) as reader:
        found = {task.id: task.status for task in reader.get_tasks(acknowledged + more)}
    assert len(found) == len(acknowledged) + len(more)  # no acknowledged enqueue lost
    assert set(found.values()) == {states.SUCCESS}
    assert recovered_in < 45

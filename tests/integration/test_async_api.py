"""The asyncio API under a running event loop: same results as the sync calls, and the loop
keeps running while a call waits."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import pgqueue
from pgqueue._errors import ConfigurationError, ConnectionFailed, TaskNotFound, TaskTimeout
from tests.support.callers import run_async
from tests.support.fixtures import sql


def test_async_round_trip_does_not_block_the_loop(
    backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    start_worker(poll_timeout=30.0)

    async def main() -> tuple[pgqueue.Task, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.02)
                ticks += 1

        running = asyncio.create_task(ticker())
        task_id = await backend.aqueue_task("sleep", seconds=1.0)
        assert task_id is not None
        queued = await backend.aget_task(task_id)
        assert queued is not None and queued.name == "sleep"
        done = await backend.await_task(task_id, timeout=20)
        stop.set()
        await running
        await backend.aclose()
        return done, ticks

    done, ticks = run_async(main())
    assert done.status == pgqueue.states.SUCCESS and done.result == 1.0
    # A blocked loop would tick about 0 times while the job sleeps for a second.
    assert ticks >= 10


def test_async_bulk_and_reads_match_the_sync_calls(backend: pgqueue.TaskBackend) -> None:
    async def main() -> list[pgqueue.Task]:
        result = await backend.aqueue_tasks("exclusive", [{"key": "a"}, {"key": "a"}])
        assert result.skipped == [1]
        mixed = await backend.aqueue_many([("add", {"a": 1, "b": 1}), ("exclusive", {"key": "a"})])
        assert mixed.skipped == [1]
        ids = result.queued + mixed.queued
        fetched = await backend.aget_tasks(ids)
        assert sorted(t.id for t in fetched) == sorted(ids)
        # A malformed id is a usage error everywhere (issue 17), no longer read as "absent".
        with pytest.raises(pgqueue.InvalidTaskId):
            await backend.aget_tasks([*ids, "not-a-uuid"])
        with pytest.raises(pgqueue.InvalidTaskId):
            await backend.aget_task("not-a-uuid")
        assert await backend.aqueue_task("exclusive", key="a") is None
        await backend.aclose()
        return fetched

    fetched = run_async(main())
    from_sync = {t.id: t for t in backend.get_tasks(t.id for t in fetched)}
    assert {t.id: t for t in fetched} == from_sync


def test_many_concurrent_calls_share_a_small_pool(dsn: str) -> None:
    async def main(backend: pgqueue.TaskBackend) -> list[str | None]:
        ids = await asyncio.gather(*(backend.aqueue_task("add", a=n, b=0) for n in range(40)))
        await backend.aclose()
        return ids

    with pgqueue.TaskBackend(dsn, task_paths=["tests.support.jobs"], pool_size=2) as backend:
        ids = run_async(main(backend))
    assert len(set(ids)) == 40
    connections = sql(
        dsn,
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE application_name = 'pgqueue-client-async'",
    )
    assert connections == [{"n": 0}]  # aclose closed them


def test_await_task_timeout_and_missing_task(backend: pgqueue.TaskBackend) -> None:
    async def main() -> None:
        task_id = await backend.aqueue_task("add", a=1, b=1)
        started = time.monotonic()
        with pytest.raises(TaskTimeout, match="QUEUED"):
            await backend.await_task(task_id or "", timeout=0.5)
        assert time.monotonic() - started < 5
        with pytest.raises(TaskNotFound):
            await backend.await_task("00000000-0000-0000-0000-000000000000", timeout=1)

    run_async(main())


def test_one_backend_across_successive_event_loops(backend: pgqueue.TaskBackend) -> None:
    """``asyncio.run`` twice without ``aclose()``: the second loop gets a new pool instead of
    failing on the dead loop's."""
    first = run_async(backend.aqueue_task("add", a=1, b=1))
    second = run_async(backend.aqueue_task("add", a=2, b=2))
    assert first and second and first != second


LOOPS = 50


@pytest.mark.slow
def test_many_successive_event_loops_on_one_backend_all_end(
    backend: pgqueue.TaskBackend,
) -> None:
    """``asyncio.run`` 50 times in a row on one backend ending each loop with ``aclose()``,
    then 50 times leaving the async pool open: every loop ends, quickly. psycopg_pool's
    maintenance worker once swallowed the cancellation ``asyncio.run`` sends to what is left
    when a connect was in progress (a new loop's pool opens one connection and grows by
    another while the first call waits), and the loop never closed."""
    ids: list[str] = []
    failed: list[BaseException] = []

    async def enqueue(n: int, close: bool) -> str:
        task_id = await backend.aqueue_task("add", a=n, b=1)
        if close:
            await backend.aclose()
        return task_id or ""

    def loops() -> None:
        try:
            for close in (True, False):
                for n in range(LOOPS):
                    ids.append(asyncio.run(enqueue(n, close)))
        except BaseException as exc:
            failed.append(exc)

    runner = threading.Thread(target=loops, name="successive-loops", daemon=True)
    started = time.monotonic()
    runner.start()
    runner.join(60)
    assert not runner.is_alive(), f"asyncio.run hung after {len(ids)} loops"
    assert not failed, failed
    assert len(set(ids)) == 2 * LOOPS and all(ids)
    assert time.monotonic() - started < 60


def test_async_connection_failure_is_clear_and_quick() -> None:
    backend = pgqueue.TaskBackend(
        "postgresql://pgqueue:secret@127.0.0.1:1/nowhere", task_paths=["tests.support.jobs"]
    )

    async def main() -> None:
        with pytest.raises(ConnectionFailed, match="cannot connect") as caught:
            await backend.aqueue_task("add", a=1, b=1)
        assert "secret" not in str(caught.value)

    run_async(main())


def test_async_job_queues_a_child_with_aqueue_task(dsn: str, start_worker: Any) -> None:
    jobs = ["tests.support.jobs", "tests.support.child_jobs"]
    with pgqueue.TaskBackend(dsn, task_paths=jobs) as backend:
        parent = backend.queue_task("queue_child_async", a=41)
        start_worker(task_paths=jobs, poll_timeout=30.0)
        child_id = backend.wait_for_task(parent or "", timeout=20).result
        child = backend.wait_for_task(child_id, timeout=20)
    assert child.name == "add" and child.result == 42


def test_two_open_event_loops_are_refused_clearly(backend: pgqueue.TaskBackend) -> None:
    def scenario() -> None:
        first = asyncio.new_event_loop()
        try:
            assert first.run_until_complete(backend.aqueue_task("add", a=1, b=1))
            with pytest.raises(ConfigurationError, match="aclose"):
                asyncio.run(backend.aqueue_task("add", a=2, b=2))
            first.run_until_complete(backend.aclose())
        finally:
            first.close()
        assert asyncio.run(backend.aqueue_task("add", a=3, b=3))  # after aclose: fine

    with ThreadPoolExecutor(1) as pool:
        pool.submit(scenario).result()

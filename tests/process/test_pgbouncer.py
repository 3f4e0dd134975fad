"""pgqueue through a real PgBouncer (F34): transaction pooling drops every piece of session
state at each commit, so nothing may rely on one: no prepared statements, no ``SET``, no
LISTEN through it. A probe at start-up decides, and LISTEN goes through ``listen_dsn``
straight to PostgreSQL, or pgqueue polls."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from pgqueue import TaskBackend, Worker, states
from pgqueue._bulk import Call
from pgqueue._db import pooling
from pgqueue._errors import ConfigurationError
from pgqueue._listener import listen_target
from tests.support.dashboard_process import dashboard
from tests.support.fixtures import TEST_JOBS, Server, WorkerThread, bin_path, cli_env, run_cli, sql
from tests.support.pgbouncer_support import PgBouncer

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/sbin/pgbouncer"), reason="needs pgbouncer (apt install pgbouncer)"
)


@pytest.fixture(scope="module")
def bouncer(pg_server: Server) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction pooling mode in front of the test server."""
    started = PgBouncer(pg_server.admin_dsn, pool_mode="transaction", pool_size=10)
    yield started
    started.stop()


@pytest.fixture
def pooled(bouncer: PgBouncer, dsn: str) -> Iterator[str]:
    """The test's database through PgBouncer in transaction pooling mode (its server
    connections closed when the test ends)."""
    yield bouncer.dsn(dsn)
    bouncer.release(dsn)


def statuses(dsn: str) -> dict[int, int]:
    rows = sql(dsn, "SELECT status, count(*) AS n FROM pgqueue.task GROUP BY status")
    return {row["status"]: row["n"] for row in rows}


def drain(dsn: str, **options: object) -> Worker:
    """Run a burst worker on ``dsn`` on a thread until the queue is empty."""
    worker = Worker(dsn, task_paths=[TEST_JOBS], burst=True, **options)  # type: ignore[arg-type]
    handle = WorkerThread(worker)
    handle.join(60)
    assert handle.error is None, handle.error
    return worker


def test_every_form_of_enqueue_and_read_works_through_transaction_pooling(
    pooled: str, dsn: str
) -> None:
    errors: list[BaseException] = []
    with TaskBackend(pooled, task_paths=[TEST_JOBS], pool_size=4) as client:

        def enqueue(n: int) -> None:
            try:
                for i in range(30):  # past psycopg's prepare threshold (5) on every connection
                    client.queue_task("add", a=n, b=i)
                    client.queue_tasks("add", [{"a": n, "b": i}, {"a": i, "b": n}])
                    client.queue_many([Call("add", {"a": 1, "b": i}), ("add", {"a": 2, "b": i})])
                    assert client.get_tasks([]) == []
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        async def enqueue_async() -> list[str | None]:
            ids = []
            for i in range(20):
                ids.append(await client.aqueue_task("add", a=i, b=i))
                ids.extend((await client.aqueue_tasks("add", [{"a": i, "b": 0}])).ids)
                ids.extend((await client.aqueue_many([("add", {"a": 0, "b": i})])).ids)
                assert (await client.aget_task(str(ids[0]))) is not None
            await client.aclose()
            return ids

        async_ids = asyncio.run(enqueue_async())
        one = client.queue_task("add", a=1, b=2)
        assert one is not None
        task = client.get_task(one)
        assert task is not None and task.status == states.QUEUED
    assert errors == []
    assert None not in async_ids
    assert statuses(dsn) == {states.QUEUED: 6 * 30 * 5 + 20 * 3 + 1}


def test_a_worker_drains_through_transaction_pooling_polling(
    pooled: str, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    with TaskBackend(pooled, task_paths=[TEST_JOBS]) as client:
        client.queue_tasks("add", [{"a": i, "b": 1} for i in range(300)])
    caplog.set_level(logging.INFO, logger="pgqueue")
    started = time.monotonic()
    worker = drain(pooled, backlog=8)
    assert time.monotonic() - started < 30
    assert worker.processed == 300
    assert statuses(dsn) == {states.SUCCESS: 300}
    modes = [r.getMessage() for r in caplog.records if r.name == "pgqueue.listener"]
    assert any("poll-only, no LISTEN" in m and "transaction pooler" in m for m in modes), modes
    # heartbeats went through the pooler too, and the worker signed off
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.worker WHERE stopped_at IS NULL") == [
        {"n": 0}
    ]


def test_the_probe_picks_poll_only_without_a_listen_dsn_and_listen_with_one(
    pooled: str, dsn: str
) -> None:
    assert pooling(pooled).pooled
    assert not pooling(dsn).pooled
    assert listen_target(pooled, None, "test") is None
    assert listen_target(pooled, dsn, "test") == dsn
    assert listen_target(dsn, None, "test") == dsn


def wait_time(client: TaskBackend, worker_dsn: str, listen_dsn: str | None) -> float:
    """Seconds ``client.wait_for_task`` took to see a task end that a worker (started while
    the client waits) ran."""
    task_id = client.queue_task("sleep", seconds=0.3)
    assert task_id is not None
    worker = WorkerThread(Worker(worker_dsn, task_paths=[TEST_JOBS], listen_dsn=listen_dsn))
    try:
        started = time.monotonic()
        task = client.wait_for_task(task_id, timeout=20)
        waited = time.monotonic() - started
    finally:
        worker.stop()
    assert task.status == states.SUCCESS
    return waited


def test_wait_for_task_through_the_pooler_does_not_fall_back_to_its_slow_recheck(
    pooled: str, dsn: str
) -> None:
    with TaskBackend(pooled, task_paths=[TEST_JOBS]) as client:
        assert wait_time(client, pooled, None) < 3.0  # poll-only: re-read every 0.5 s
    with TaskBackend(pooled, task_paths=[TEST_JOBS], listen_dsn=dsn) as client:
        assert wait_time(client, pooled, dsn) < 3.0  # woken by NOTIFY on the direct connection
        assert client._listener is not None and client._listener.dsn == dsn


def test_a_listen_dsn_through_the_pooler_is_refused_naming_the_fix(pooled: str) -> None:
    with pytest.raises(ConfigurationError, match="straight at PostgreSQL") as refused:
        listen_target(pooled, pooled, "worker")
    assert "--listen-dsn" in str(refused.value)
    done = run_cli(
        ["pgqueue-worker", "--task-paths", TEST_JOBS, "--burst"],
        pooled,
        PGQUEUE_LISTEN_DSN=pooled,
    )
    assert done.returncode != 0
    assert "straight at PostgreSQL" in done.stderr and "Traceback" not in done.stderr


def test_a_statement_error_in_the_completer_is_retried_not_recorded_as_failure(
    dsn: str,
) -> None:
    # The first write of an outcome fails with a non-data error (42501, as a pooler's lost
    # prepared statement 26000 would); the second goes through.
    sql(dsn, "CREATE SEQUENCE public.finish_attempts")
    sql(
        dsn,
        """
        CREATE FUNCTION public.refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status = 1 AND nextval('public.finish_attempts') = 1 THEN
                RAISE EXCEPTION 'not now' USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$
        """,
    )
    sql(
        dsn,
        "CREATE TRIGGER refuse_once BEFORE UPDATE ON pgqueue.task "
        "FOR EACH ROW EXECUTE FUNCTION public.refuse_once()",
    )
    with TaskBackend(dsn, task_paths=[TEST_JOBS]) as client:
        task_id = client.queue_task("add", a=1, b=2)
        assert task_id is not None
        drain(dsn)
        task = client.get_task(task_id)
    assert task is not None
    assert (task.status, task.result) == (states.SUCCESS, 3)


def test_cli_worker_heartbeats_and_rescue_work_through_the_pooler(pooled: str, dsn: str) -> None:
    with TaskBackend(pooled, task_paths=[TEST_JOBS]) as client:
        task_id = client.queue_task("sleep", seconds=60)
        assert task_id is not None
        lost = subprocess.Popen(
            [bin_path("pgqueue-worker"), "--task-paths", TEST_JOBS, "--lease", "2"],
            env=cli_env(pooled),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while client.get_task(task_id).status != states.STARTED:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the worker never claimed the task"
                time.sleep(0.1)
            time.sleep(3.5)  # heartbeats every lease/4 = 0.5 s: past the prepare threshold (5)
        finally:
            lost.send_signal(signal.SIGKILL)
            _, err = lost.communicate(timeout=10)
        assert "prepared statement" not in err and "Traceback" not in err, err
        beats = sql(dsn, "SELECT heartbeat_at > started_at AS beat FROM pgqueue.worker")
        assert beats == [{"beat": True}]
        # another worker, started once the lost one's lease (2 s) ran out, rescues its task
        # (sleep has no retries left: FAILURE, saying why)
        time.sleep(2.5)
        drain(pooled, lease=2.0)
        task = client.get_task(task_id)
    assert task is not None and task.status == states.FAILURE
    assert "lost" in (task.error or ""), task.error


def test_cli_status_list_show_through_the_pooler(pooled: str) -> None:
    with TaskBackend(pooled, task_paths=[TEST_JOBS]) as client:
        ids = [client.queue_task("add", a=i, b=i) for i in range(10)]
    for _ in range(3):  # again and again, past any prepare threshold
        for args in (["pgqueue", "status"], ["pgqueue", "list"], ["pgqueue", "show", str(ids[0])]):
            done = run_cli(args, pooled)
            assert done.returncode == 0, done.stderr
            assert "Traceback" not in done.stderr


def test_session_pooling_still_listens(bouncer: PgBouncer, pg_server: Server, dsn: str) -> None:
    session_bouncer = PgBouncer(pg_server.admin_dsn, pool_mode="session", pool_size=10)
    try:
        through = session_bouncer.dsn(dsn)
        assert not pooling(through).pooled
        assert listen_target(through, None, "test") == through
        with TaskBackend(through, task_paths=[TEST_JOBS]) as client:
            client.queue_tasks("add", [{"a": i, "b": 1} for i in range(50)])
            drain(through)
            assert wait_time(client, through, None) < 3.0
    finally:
        session_bouncer.stop()
    assert statuses(dsn) == {states.SUCCESS: 51}


def test_the_dashboard_through_the_pooler_shows_pages_and_polls(pooled: str) -> None:
    with TaskBackend(pooled, task_paths=[TEST_JOBS]) as client:
        task_id = client.queue_task("add", a=20, b=22)
    with dashboard(pooled) as (url, output):
        for _ in range(3):  # again and again, past any prepare threshold
            for path in ("/", "/tasks", f"/tasks/{task_id}"):
                with urllib.request.urlopen(url + path, timeout=10) as page:
                    assert page.status == 200
        with urllib.request.urlopen(url + "/events", timeout=10) as events:
            assert events.readline() == b"retry: 2000\n"
            assert events.readline() == b"event: ready\n"
            assert events.readline() == b"data: poll-only\n"
            events.readline()
            assert events.readline() == b"data: poll\n"  # the page re-renders on it
    assert "poll-only" in output[0] and "Traceback" not in output[0], output


def test_the_scheduler_queues_ticks_through_the_pooler(
    pooled: str, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    sql(dsn, "CREATE TABLE test_ticks (tick timestamptz PRIMARY KEY, task_id uuid)")
    worker = WorkerThread(
        Worker(
            pooled, task_paths=["tests.support.schedule_jobs"], schedule_periodic=True, backlog=2
        )
    )
    try:
        deadline = time.monotonic() + 20
        while len(sql(dsn, "SELECT tick FROM test_ticks")) < 3:
            assert time.monotonic() < deadline, "no ticks ran"
            time.sleep(0.2)
    finally:
        worker.stop()
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert problems == []
    assert statuses(dsn).get(states.FAILURE, 0) == 0


def test_migrate_through_the_pooler_is_refused_naming_the_fix(pooled: str) -> None:
    done = run_cli(["pgqueue", "migrate"], pooled)
    assert done.returncode != 0
    assert "straight to PostgreSQL" in done.stderr and "Traceback" not in done.stderr

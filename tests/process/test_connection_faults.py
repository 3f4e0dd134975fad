"""Connection faults: terminated backends, server restarts and outages, half-open sockets.

F05 finish on a blip, F06 outage longer than the lease, F07 LISTEN lost, F08 half-open
socket, F09 the listener keeps draining while a job holds the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from pgqueue import TaskBackend, states
from pgqueue._db import connect
from pgqueue._rescuer import rescue_lost_tasks
from pgqueue._retry import DEFAULT_BACKOFF
from pgqueue._store import Store
from tests.support import crash as crash_support
from tests.support.callers import run_async
from tests.support.crash import (
    CRASH_JOBS,
    runs,
    task_row,
    terminate_backends,
    wait_status,
    wait_until,
)
from tests.support.fixtures import Server, sql
from tests.support.proxy import BlackholeProxy

runs_dsn = crash_support.runs_dsn
client_jobs = crash_support.client_jobs
procs = crash_support.procs


def backends(dsn: str, application_name: str) -> list[int]:
    return [
        r["pid"]
        for r in sql(
            dsn,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s",
            (application_name,),
        )
    ]


def outage(server: Server, seconds: float) -> None:
    """Stop the embedded server for ``seconds``, then start it again (same settings)."""
    if server.embedded is None:
        pytest.skip("an outage needs the embedded server (PGQUEUE_TEST_DSN is set)")
    server.embedded._pg_ctl(["-w", "-m", "fast", "stop"])
    time.sleep(seconds)
    server.embedded._pg_ctl(["-w", "restart"])  # starts with the options it last ran with
    server.embedded._refresh()


def finish_quickly(dsn: str, client: TaskBackend, limit: float) -> float:
    """Queue one task; return how long it took to finish (must be under ``limit``)."""
    started = time.monotonic()
    task_id = client.queue_task("tracked", key=f"probe-{started}")
    wait_status(dsn, task_id, {states.SUCCESS}, timeout=limit)
    return time.monotonic() - started


def test_terminated_listener_reconnects_and_catches_up(
    runs_dsn: str, client: TaskBackend, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """F07: pg_terminate_backend on the worker's listener, enqueue at once: the task starts
    after the reconnect's catch-up poll, not after poll_timeout (60 s); later tasks start at
    notification speed again; the reconnect is logged."""
    caplog.set_level(logging.INFO)
    start_worker(task_paths=[CRASH_JOBS], poll_timeout=60.0)
    old = wait_until(lambda: backends(runs_dsn, "pgqueue-worker-listener"), 10, "listener")
    sql(runs_dsn, "SELECT pg_terminate_backend(%s)", (old[0],))
    assert finish_quickly(runs_dsn, client, limit=10) < 10
    new = wait_until(lambda: backends(runs_dsn, "pgqueue-worker-listener"), 10, "listener")
    assert new != old
    assert "listener reconnected" in caplog.text
    assert finish_quickly(runs_dsn, client, limit=5) < 2


@pytest.mark.slow
def test_postgres_restart_while_tasks_flow(
    runs_dsn: str, client: TaskBackend, start_worker: Any, pg_server: Server
) -> None:
    """F07: restart PostgreSQL while two workers run tasks: no task lost, none run twice,
    and a task queued after the restart starts at notification speed (poll_timeout 60 s)."""
    for _ in range(2):
        start_worker(task_paths=[CRASH_JOBS], poll_timeout=60.0, lease=3.0)
    before = [client.queue_task("tracked", key=f"b{i}", seconds=0.05) for i in range(40)]
    time.sleep(0.3)
    pg_server.restart()
    after = [client.queue_task("tracked", key=f"a{i}", seconds=0.05) for i in range(40)]
    for task_id in before + after:
        wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=60)
        assert len(runs(runs_dsn, task_id)) == 1, task_id  # executed exactly once
    time.sleep(1)  # the listeners are back by now
    assert finish_quickly(runs_dsn, client, limit=10) < 3


@pytest.mark.slow
def test_outage_longer_than_lease_causes_no_second_run(
    runs_dsn: str, client: TaskBackend, start_worker: Any, pg_server: Server
) -> None:
    """F06: the database is down for twice the lease while a long task runs; when it comes
    back no worker rescues the task (leases count from the server's start), the task is not
    run twice, and the workers reconnect."""
    for _ in range(2):
        start_worker(task_paths=[CRASH_JOBS], poll_timeout=60.0, lease=1.5)
    task_id = client.queue_task("tracked", key="long", seconds=6)
    wait_until(lambda: runs(runs_dsn, task_id), 10, "the task to start")
    outage(pg_server, 3.0)
    # a rescue sweep right after the restart, before the owner's heartbeat got through
    with connect(runs_dsn) as conn:
        assert rescue_lost_tasks(conn, Store("pgqueue"), DEFAULT_BACKOFF) == []
    row = wait_status(runs_dsn, task_id, {states.SUCCESS, states.RETRY}, timeout=30)
    assert row["status"] == states.SUCCESS, row["error"]
    assert row["attempts"] == 1
    assert len(runs(runs_dsn, task_id)) == 1
    assert finish_quickly(runs_dsn, client, limit=15) < 15


def test_finish_survives_a_dropped_connection(
    runs_dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """F05: the worker's pool connections are terminated just before the finish is written;
    the finish still lands (SUCCESS, one attempt, one run), the task never stays STARTED."""
    start_worker(task_paths=[CRASH_JOBS], lease=5.0)
    task_id = client.queue_task("cut_finish_connection")
    row = wait_status(runs_dsn, task_id, {states.SUCCESS, states.FAILURE}, timeout=20)
    assert (row["status"], row["attempts"], row["result"]) == (states.SUCCESS, 1, "finished")
    assert len(runs(runs_dsn, task_id)) == 1


@pytest.mark.slow
def test_half_open_listener_is_noticed_and_replaced(
    runs_dsn: str, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """F08: the listener's connection stops answering without closing (bytes acknowledged,
    never delivered). The timed liveness check notices within ~15 s, the listener reconnects
    and LISTENs again, and a task queued meanwhile starts without waiting for poll_timeout."""
    caplog.set_level(logging.INFO)
    proxy = BlackholeProxy(runs_dsn)
    try:
        start_worker(dsn=proxy.dsn, task_paths=[CRASH_JOBS], poll_timeout=120.0, lease=120.0)
        wait_until(lambda: backends(runs_dsn, "pgqueue-worker-listener"), 10, "listener")
        assert proxy.blackhole("pgqueue-worker-listener") == 1
        dropped_at = time.monotonic()
        with TaskBackend(runs_dsn, task_paths=[CRASH_JOBS]) as client:
            task_id = client.queue_task("tracked", key="during")
            wait_status(runs_dsn, task_id, {states.SUCCESS}, timeout=30)
        assert time.monotonic() - dropped_at < 25
        assert "did not answer a liveness check" in caplog.text
        assert "listener reconnected" in caplog.text
    finally:
        proxy.close()


@pytest.mark.slow
def test_listener_drains_while_a_job_holds_the_gil(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """F09: while a job holds the GIL in bursts, 1500 notifications arrive; the listener
    keeps draining them, no pgqueue backend idles in a transaction or holds an old snapshot,
    and every enqueue succeeds."""
    procs(runs_dsn, "--backlog", "1", "--lease", "5")
    hog = client.queue_task("hold_gil", seconds=6, burst=0.5)
    wait_until(lambda: runs(runs_dsn, hog), 20, "the GIL holder to start")
    worst_usage = 0.0
    for i in range(1500):
        assert client.queue_task("blob_size", blob=str(i)) is not None
        if i % 100 == 0:
            worst_usage = max(
                worst_usage, sql(runs_dsn, "SELECT pg_notification_queue_usage() AS u")[0]["u"]
            )
            stuck = sql(
                runs_dsn,
                "SELECT application_name, state, backend_xmin FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE 'pgqueue-worker%%' "
                "AND (state LIKE 'idle in transaction%%' OR backend_xmin IS NOT NULL "
                "AND state = 'idle')",
            )
            assert stuck == []
    assert worst_usage < 0.01
    assert task_row(runs_dsn, hog)["status"] in (states.STARTED, states.SUCCESS)
    wait_status(runs_dsn, hog, {states.SUCCESS}, timeout=30)
    assert task_row(runs_dsn, hog)["attempts"] == 1


@pytest.mark.slow
def test_enqueue_after_the_client_pool_connections_were_terminated(backend: TaskBackend) -> None:
    """The pools check a connection before handing it out without a round trip (a closed
    server end shows as input on the socket): after the server dropped every pooled
    connection, the next enqueue (sync, and async in the same event loop) succeeds on a
    fresh one instead of raising."""

    async def main() -> None:
        assert await backend.aqueue_task("add", a=1, b=2)
        assert backend.queue_task("add", a=1, b=3)
        assert terminate_backends(backend.dsn, "pgqueue-client") >= 1
        assert terminate_backends(backend.dsn, "pgqueue-client-async") >= 1
        await asyncio.sleep(0.2)  # the FIN reaches the client sockets
        assert await backend.aqueue_task("add", a=1, b=4)
        assert backend.queue_task("add", a=1, b=5)

    run_async(main())
    assert sql(backend.dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 4}]

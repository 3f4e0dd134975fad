"""F27 full NOTIFY queue: enqueue never fails because a notification could not be sent.

A dedicated embedded server with the smallest notification queue PostgreSQL allows
(``max_notify_queue_pages``, PostgreSQL 17+), one session that LISTENs and then sits idle in a
transaction, and notifications until the queue is full: enqueue goes on working, a warning
names the cause and the holder, ``pgqueue status``, the dashboard and the metrics show the
usage, and a polling worker still drains the queue.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue import TaskBackend, Worker, states
from pgqueue._db import connect, quote_ident
from pgqueue._embedded import EmbeddedPostgres
from pgqueue._metrics import serve_metrics
from pgqueue._schema import migrate
from tests.process import test_dashboard
from tests.process.test_dashboard import http
from tests.process.test_metrics import free_port, scrape
from tests.support.crash import wait_until
from tests.support.fixtures import TEST_JOBS, WorkerThread, run_cli, sql

#: Seconds per test (subprocesses, real workers): not in the quick loop.
pytestmark = pytest.mark.slow

start_dashboard = test_dashboard.start_dashboard


@pytest.fixture(scope="module")
def small_queue_server() -> Iterator[EmbeddedPostgres]:
    """An embedded server whose NOTIFY queue holds 64 pages (512 kB)."""
    tmp = tempfile.mkdtemp(prefix="pgqueue-notify-")
    try:
        server = EmbeddedPostgres(
            Path(tmp) / "pgdata", delete=True, settings={"max_notify_queue_pages": "64"}
        )
    except psycopg.errors.UndefinedObject:
        pytest.skip("max_notify_queue_pages needs PostgreSQL 17 or later")
    yield server
    server.stop()


@pytest.fixture
def small_dsn(small_queue_server: EmbeddedPostgres) -> Iterator[str]:
    name = f"pgqueue_notify_{uuid.uuid4().hex[:12]}"
    with connect(small_queue_server.dsn) as conn:
        conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    dsn = small_queue_server.dsn_for(name)
    migrate(dsn, "pgqueue")
    yield dsn
    with connect(small_queue_server.dsn) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def fill_notify_queue(dsn: str) -> float:
    """Send large notifications until PostgreSQL refuses one; return the queue's usage."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(10_000):
            try:
                conn.execute("SELECT pg_notify('filler', repeat('x', 7900))")
            except psycopg.errors.ProgramLimitExceeded:
                break
        else:
            raise AssertionError("the NOTIFY queue never filled")
        usage = conn.execute("SELECT pg_notification_queue_usage()").fetchone()
    assert usage is not None
    return float(usage[0])


def test_enqueue_works_with_a_full_notify_queue(
    small_dsn: str, start_dashboard: Callable[..., str]
) -> None:
    with psycopg.connect(small_dsn, autocommit=True) as holder:
        holder.execute("LISTEN pgqueue_test_channel")
        holder.execute("BEGIN")
        holder.execute("SELECT 1")  # idle in transaction: reads no notifications
        holder_pid = holder.info.backend_pid
        assert fill_notify_queue(small_dsn) > 0.9

        with TaskBackend(small_dsn, task_paths=[TEST_JOBS]) as backend:
            ids = [backend.queue_task("add", a=i, b=1) for i in range(50)]
            ids += backend.queue_tasks("add", [{"a": 1, "b": i} for i in range(50)]).queued
            assert len(ids) == 100

        notices: list[tuple[str | None, str, str]] = []
        with psycopg.connect(small_dsn, autocommit=True) as conn:
            conn.add_notice_handler(
                lambda d: notices.append(
                    (d.severity_nonlocalized, d.message_primary or "", d.message_hint or "")
                )
            )
            row = conn.execute(
                "SELECT pgqueue.queue_task('add', '{\"a\": 1, \"b\": 2}') AS id"
            ).fetchone()
            assert row is not None and row[0] is not None
            ids.append(str(row[0]))
        severity, message, hint = notices[0]
        assert severity == "WARNING"
        assert "NOTIFY tasks_task_queued skipped: the notification queue is" in message
        assert "workers find the task by polling" in message
        assert f"pid {holder_pid}" in hint

        status = run_cli(["pgqueue", "status"], small_dsn)
        assert status.returncode == 0, status.stderr
        assert "notification queue: " in status.stdout
        assert "warning: the NOTIFY queue is" in " ".join(status.stdout.split())
        as_json = run_cli(["pgqueue", "status", "--json"], small_dsn)
        assert json.loads(as_json.stdout)["notify_queue_usage"] > 0.9
        _, _, page = http(start_dashboard(dsn_=small_dsn) + "/")
        assert 'id="notify-queue" class="bad"' in page
        assert "not reading its notifications" in page

        worker = Worker(small_dsn, task_paths=[TEST_JOBS], poll_timeout=0.5, lease=5.0, backlog=8)
        port = free_port()
        metrics = serve_metrics(worker, port)
        handle = WorkerThread(worker)
        try:
            assert scrape(port)[("pgqueue_notify_queue_usage", ())] > 0.9
            wait_until(
                lambda: (
                    sql(
                        small_dsn,
                        "SELECT count(*) AS n FROM pgqueue.task WHERE status = %s",
                        (states.SUCCESS,),
                    )[0]["n"]
                    == len(ids)
                ),
                60,
                "the worker to drain the queue by polling",
            )
        finally:
            handle.stop()
            metrics.close()
        holder.execute("ROLLBACK")

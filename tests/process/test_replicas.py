"""Reads off the primary (``--read-dsn``) from a real streaming standby, and the clear
refusal of a standby or read-only session given where pgqueue must write."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from pgqueue import TaskBackend, Worker
from pgqueue._errors import ConfigurationError
from pgqueue._metrics import serve_metrics
from pgqueue._schema import migrate
from tests.support.dashboard_process import dashboard
from tests.support.fixtures import TEST_JOBS, run_cli
from tests.support.pgbouncer_support import free_port
from tests.support.replication_support import ReplicatedPair


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicatedPair]:
    """A primary and a streaming standby holding a migrated database ``queue``."""
    started = ReplicatedPair()
    try:
        started.create_database("queue")
        migrate(started.dsn("queue"), "pgqueue")
        started.wait_replayed()
        yield started
    finally:
        started.stop()


@pytest.fixture
def queued(pair: ReplicatedPair) -> str:
    """The id of a task queued on the primary and replayed on the standby."""
    with TaskBackend(pair.dsn("queue"), task_paths=[TEST_JOBS]) as client:
        task_id = client.queue_task("add", a=1, b=2)
    assert task_id is not None
    pair.wait_replayed()
    return task_id


def test_status_list_and_show_read_the_standby_and_say_how_stale(
    pair: ReplicatedPair, queued: str
) -> None:
    standby = pair.dsn("queue", standby=True)
    for args in (["status"], ["list"], ["show", queued], ["list", "--json"]):
        done = run_cli(["pgqueue", *args, "--read-dsn", standby], None)
        assert done.returncode == 0, done.stderr
        assert "read from a standby (" in done.stderr and "behind the primary)" in done.stderr
        assert "add" in done.stdout
    done = run_cli(["pgqueue", "show", queued], None, PGQUEUE_READ_DSN=standby)
    assert done.returncode == 0 and "read from a standby" in done.stderr
    done = run_cli(["pgqueue", "status"], pair.dsn("queue"))  # the primary: nothing said
    assert done.returncode == 0 and "standby" not in done.stderr


def test_a_worker_given_a_standby_is_refused_naming_the_fix(pair: ReplicatedPair) -> None:
    standby = pair.dsn("queue", standby=True)
    with pytest.raises(ConfigurationError, match="target_session_attrs=read-write"):
        Worker(standby, task_paths=[TEST_JOBS]).run()
    done = run_cli(["pgqueue-worker", "--task-paths", TEST_JOBS, "--burst"], standby)
    assert done.returncode != 0
    assert "reaches a standby" in done.stderr and "Traceback" not in done.stderr


def test_a_read_only_session_is_refused_for_work_and_enqueue(pair: ReplicatedPair) -> None:
    read_only = pair.dsn("queue") + " options='-c default_transaction_read_only=on'"
    with pytest.raises(ConfigurationError, match="read-only session"):
        Worker(read_only, task_paths=[TEST_JOBS]).run()
    with (
        TaskBackend(pair.dsn("queue", standby=True), task_paths=[TEST_JOBS]) as client,
        pytest.raises(ConfigurationError, match="need the primary"),
    ):
        client.queue_task("add", a=1, b=2)


def test_metrics_read_queue_depth_from_the_standby(pair: ReplicatedPair, queued: str) -> None:
    worker = Worker(pair.dsn("queue"), task_paths=[TEST_JOBS])
    port = free_port()
    metrics = serve_metrics(worker, port, read_dsn=pair.dsn("queue", standby=True))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            text = page.read().decode()
    finally:
        metrics.close()
    assert 'pgqueue_queue_depth{queue="tasks",state="QUEUED"}' in text
    lag = [line for line in text.splitlines() if line.startswith("pgqueue_read_replica_lag")]
    assert len(lag) == 1 and float(lag[0].split()[-1]) >= 0.0, lag


def test_the_dashboard_reads_the_standby_and_acts_on_the_primary(
    pair: ReplicatedPair, queued: str
) -> None:
    standby = pair.dsn("queue", standby=True)
    with dashboard(pair.dsn("queue"), "--read-dsn", standby) as (url, _):
        html = urllib.request.urlopen(f"{url}/tasks/{queued}", timeout=10).read().decode()
    assert "read from a standby (" in html and "behind the primary)" in html

"""Prometheus metrics of ``pgqueue-worker --metrics-port``, scraped over HTTP after real tasks
ran in a real worker process (F07: a terminated LISTEN connection shows as a reconnect)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgqueue import TaskBackend
from tests.support.fixtures import bin_path, cli_env, run_cli, sql

OPS_JOBS = "tests.support.ops_jobs"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


@contextmanager
def metrics_process(dsn: str, jobs: str, *options: str) -> Iterator[int]:
    """A ``pgqueue-worker`` on ``jobs`` serving metrics (with ``options``, logging at
    WARNING); yields its metrics port once it answers, and ends it afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [bin_path("pgqueue-worker"), "--task-paths", jobs, "--metrics-port", str(port),
         *options, "--log-level", "WARNING"],
        env=cli_env(dsn),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip

    def serving() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            scrape(port)
        except OSError:
            return False
        return True

    try:
        eventually(serving)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def metrics_worker(dsn: str) -> Iterator[int]:
    """A pgqueue-worker process serving metrics; yields its metrics port."""
    with metrics_process(dsn, OPS_JOBS, "--backlog", "2", "--poll-timeout", "30") as port:
        yield port


@pytest.mark.slow
def test_counts_histograms_and_gauges_after_real_tasks(dsn: str, metrics_worker: int) -> None:
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        ids = [client.queue_task("double", n=n) for n in range(3)]
        ids.append(client.queue_task("broken"))
        for task_id in ids:
            client.wait_for_task(str(task_id), timeout=30)
        client.queue_task("double", n=9, countdown=3600)  # stays QUEUED, not due
    double = (("job_name", "double"), ("queue", "tasks"))
    broken = (("job_name", "broken"), ("queue", "tasks"))
    samples: Samples = {}

    def all_recorded() -> bool:
        samples.update(scrape(metrics_worker))
        return samples.get(("pgqueue_tasks_finished_total", (*double, ("state", "SUCCESS")))) == 3

    eventually(all_recorded)
    assert samples[("pgqueue_tasks_started_total", double)] == 3
    assert samples[("pgqueue_tasks_started_total", broken)] == 1
    assert samples[("pgqueue_tasks_finished_total", (*broken, ("state", "FAILURE")))] == 1
    assert samples[("pgqueue_task_wait_seconds_count", double)] == 3
    assert samples[("pgqueue_task_run_seconds_count", double)] == 3
    assert samples[("pgqueue_task_run_seconds_count", broken)] == 1
    assert samples[("pgqueue_task_run_seconds_sum", double)] < 30
    assert samples[("pgqueue_claim_batch_size_sum", ())] == 4
    assert samples[("pgqueue_tasks_in_flight", ())] == 0
    assert ("pgqueue_queue_depth", (("queue", "tasks"), ("state", "QUEUED"))) not in samples
    assert samples[("pgqueue_oldest_due_task_age_seconds", (("queue", "tasks"),))] == 0
    assert samples[("pgqueue_listener_reconnects_total", ())] == 0


@pytest.mark.slow
def test_a_terminated_listener_shows_as_a_reconnect(dsn: str, metrics_worker: int) -> None:
    """F07: the LISTEN connection is terminated; the worker reconnects and the counter says so."""

    def terminate_listener() -> list[dict[str, Any]]:
        # the worker serves metrics as it starts; its listener connects on its own thread
        return sql(
            dsn,
            "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity "
            "WHERE application_name = 'pgqueue-worker-listener' AND datname = current_database()",
        )

    killed: list[dict[str, Any]] = []
    eventually(lambda: bool(killed.extend(terminate_listener()) or killed))
    assert all(r["ok"] for r in killed)
    eventually(lambda: scrape(metrics_worker)[("pgqueue_listener_reconnects_total", ())] >= 1)


@pytest.mark.slow
def test_a_taken_port_is_a_clear_error(dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done: Any = run_cli(
            ["pgqueue-worker", "--task-paths", OPS_JOBS, "--metrics-port", port, "--burst"], dsn
        )
    assert done.returncode == 2, done.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr

"""Metrics an operator can alert on (issue 18): the job label does not collide with
Prometheus' own ``job``, a retry is not an outcome, depth counts only due tasks, the lag of each
queue has a gauge, and the standard process/python series are there without ``_created`` ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgqueue import TaskBackend, states
from tests.support.fixtures import sql

from .test_metrics import Samples, eventually, metrics_process, scrape

JOBS = "tests.support.ops_bugs_jobs"


@pytest.fixture
def metrics_port(dsn: str) -> Iterator[int]:
    """A pgqueue-worker process on queue ``tasks`` serving metrics; yields its port."""
    with metrics_process(dsn, JOBS, "--poll-timeout", "0.2") as port:
        yield port


def test_series_are_labelled_job_name_and_a_retry_is_not_finished(
    dsn: str, metrics_port: int, tmp_path: Path
) -> None:
    with TaskBackend(dsn, task_paths=[JOBS]) as client:
        task_id = client.queue_task("flaky", marker=str(tmp_path / "marker"))
        done = client.wait_for_task(str(task_id), timeout=30)
        assert done is not None and done.status == states.SUCCESS
    labels = (("job_name", "flaky"), ("queue", "tasks"))
    samples: Samples = {}

    def recorded() -> bool:
        samples.update(scrape(metrics_port))
        return (("pgqueue_tasks_finished_total", (*labels, ("state", "SUCCESS")))) in samples

    eventually(recorded)
    assert samples[("pgqueue_tasks_finished_total", (*labels, ("state", "SUCCESS")))] == 1
    assert samples[("pgqueue_tasks_retried_total", labels)] == 1
    assert ("pgqueue_tasks_finished_total", (*labels, ("state", "RETRY"))) not in samples
    assert samples[("pgqueue_tasks_started_total", labels)] == 2
    assert not [key for key in samples if "job" in dict(key[1])], "a label named job"


def test_depth_counts_due_tasks_and_the_oldest_due_age_is_a_gauge(
    dsn: str, metrics_port: int
) -> None:
    with TaskBackend(dsn, task_paths=[JOBS]) as client:
        client.queue_task("echo", queue="idle")  # due, nobody consumes queue idle
        client.queue_task("echo", queue="idle", countdown=3600)  # delayed by an hour
        client.queue_task("echo", queue="later", countdown=3600)  # only delayed tasks
    sql(dsn, "UPDATE pgqueue.task SET run_at = run_at - interval '90 seconds' "
             "WHERE queue = 'idle' AND run_at <= now()")  # fmt: skip
    samples = scrape(metrics_port)
    assert samples[("pgqueue_queue_depth", (("queue", "idle"), ("state", "QUEUED")))] == 1
    assert ("pgqueue_queue_depth", (("queue", "later"), ("state", "QUEUED"))) not in samples
    idle_age = samples[("pgqueue_oldest_due_task_age_seconds", (("queue", "idle"),))]
    assert 90 <= idle_age < 300
    assert samples[("pgqueue_oldest_due_task_age_seconds", (("queue", "later"),))] == 0


def test_process_and_python_series_are_kept_and_no_created_series(metrics_port: int) -> None:
    samples = scrape(metrics_port)
    names = {name for name, _ in samples}
    assert "process_cpu_seconds_total" in names
    assert "process_resident_memory_bytes" in names
    assert "python_info" in names
    assert not [name for name in names if name.endswith("_created")]

"""Jobs the workflow tests queue and run."""

from __future__ import annotations

import os
import time
from typing import Any

import pgqueue
from pgqueue._retry import ExponentialBackoff


@pgqueue.job()
def collect(consumer: pgqueue.TaskConsumer, tag: str = "") -> dict[str, Any]:
    """Return what the task sees of its parents, in order: ``[[id, state, result], ...]``."""
    results = consumer.parent_results()
    return {"tag": tag, "parents": [[i, r.state, r.result] for i, r in results.items()]}


@pgqueue.job(run_after_failure=True)
def collect_anyway(consumer: pgqueue.TaskConsumer, tag: str = "") -> dict[str, Any]:
    """As :func:`collect`, but runs whatever its parents ended as."""
    results = consumer.parent_results()
    return {"tag": tag, "parents": [[i, r.state, r.error] for i, r in results.items()]}


@pgqueue.job()
def tally(consumer: pgqueue.TaskConsumer) -> dict[str, int]:
    """Return how many parents succeeded, failed, were revoked (a batch's callback)."""
    return consumer.parent_counts()


@pgqueue.job()
def step(consumer: pgqueue.TaskConsumer, add: int) -> int:
    """A chain step: the previous step's result (0 for the first) plus ``add``."""
    previous = [r.result for r in consumer.parent_results().values()]
    return sum(previous) + add


@pgqueue.job(can_overlap=False)
def single(consumer: pgqueue.TaskConsumer, key: str) -> str:
    """A job that cannot overlap."""
    return key


@pgqueue.job(max_retries=3, backoff=ExponentialBackoff(base=0.1, cap=0.5))
def slow_step(consumer: pgqueue.TaskConsumer, add: int, seconds: float) -> int:
    """A chain step that records each run (``crash_runs``) and sleeps ``seconds`` on its
    first attempt only, so a test can kill the worker running it."""
    with consumer.backend.connection() as conn:
        conn.execute(
            "INSERT INTO crash_runs (task_id, attempt, worker, pid, note) "
            "VALUES (%s, %s, %s, %s, '')",
            (consumer.task_id, consumer.attempt, consumer.worker, os.getpid()),
        )
    if consumer.attempt == 1:
        time.sleep(seconds)
    previous = [r.result for r in consumer.parent_results().values()]
    return sum(previous) + add

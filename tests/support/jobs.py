"""Jobs the tests queue and run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pgqueue


@pgqueue.job()
def add(consumer: pgqueue.TaskConsumer, a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pgqueue.job()
async def async_add(consumer: pgqueue.TaskConsumer, a: int, b: int) -> int:
    """Add two numbers on the event loop."""
    await asyncio.sleep(0.01)
    return a + b


@pgqueue.job()
def sleep(consumer: pgqueue.TaskConsumer, seconds: float) -> float:
    """Sleep, then return the seconds slept."""
    time.sleep(seconds)
    return seconds


@pgqueue.job(can_overlap=False)
def exclusive(consumer: pgqueue.TaskConsumer, key: str, seconds: float = 0.0) -> str:
    """A non-overlapping job: one live task per key."""
    time.sleep(seconds)
    return key


@pgqueue.job(timeout=3600)
def with_timeout(consumer: pgqueue.TaskConsumer) -> str:
    """A job with a default expiry of one hour."""
    return "ok"


@pgqueue.job()
def record(consumer: pgqueue.TaskConsumer, key: str) -> dict[str, Any]:
    """Insert one row per execution into test_executions (made by the test)."""
    with consumer.backend.connection() as conn:
        conn.execute(
            "INSERT INTO test_executions (task_id, key, worker) VALUES (%s, %s, %s)",
            (consumer.task_id, key, consumer.worker),
        )
    return {"key": key, "worker": consumer.worker}


@pgqueue.job()
def queue_child(consumer: pgqueue.TaskConsumer, a: int) -> str | None:
    """Queue another task from inside a job, through consumer.backend."""
    return consumer.backend.queue_task("add", a=a, b=1)


@pgqueue.job()
def not_json(consumer: pgqueue.TaskConsumer) -> object:
    """Return something that is not JSON."""
    return object()


class Fail(pgqueue.Job):
    """Always raises ValueError."""

    def __call__(self, consumer: pgqueue.TaskConsumer, **kwargs: Any) -> None:
        raise ValueError(f"failed with {kwargs}")


class PerKey(pgqueue.Job):
    """Overlap decided per call: tasks with exclusive=True hold a lock."""

    name = "per_key"

    @staticmethod
    def can_overlap(**kwargs: Any) -> bool:  # type: ignore[override]
        return not kwargs.get("exclusive", False)

    def __call__(self, consumer: pgqueue.TaskConsumer, **kwargs: Any) -> dict[str, Any]:
        return kwargs

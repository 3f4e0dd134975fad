"""Typed enqueue that mypy accepts (checked by tests/test_typed_enqueue.py)."""

from __future__ import annotations

import pgqueue
from pgqueue import TaskBackend, TaskId


@pgqueue.job()
def resize(consumer: pgqueue.TaskConsumer, path: str, width: int, height: int = 0) -> str:
    return f"{path}@{width}x{height}"


async def queue_some(backend: TaskBackend) -> list[TaskId | None]:
    first = resize.enqueue(backend, path="cat.png", width=200)
    second = resize.enqueue(backend, "dog.png", 100, height=50)
    third = await resize.aenqueue(backend, path="cow.png", width=3)
    later = resize.options(countdown="5m", priority=3).enqueue(backend, path="a", width=1)
    backend.queue_many([resize.call(path=p, width=10) for p in ("x", "y")])
    result: str = resize(None, path="a", width=1)
    assert result
    return [first, second, third, later]

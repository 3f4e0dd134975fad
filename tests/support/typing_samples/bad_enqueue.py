"""Typed enqueue that mypy refuses: a misspelled, a missing and a mistyped argument."""

from __future__ import annotations

import pgqueue
from pgqueue import TaskBackend


@pgqueue.job()
def resize(consumer: pgqueue.TaskConsumer, path: str, width: int, height: int = 0) -> str:
    return f"{path}@{width}x{height}"


def queue_wrong(backend: TaskBackend) -> int:
    resize.enqueue(backend, path="cat.png", widht=200)
    resize.enqueue(backend, path="cat.png")
    resize.enqueue(backend, path="cat.png", width="wide")
    return resize.enqueue(backend, path="cat.png", width=1)

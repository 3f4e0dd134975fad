"""Jobs with telling signatures, for the tests of checked and typed enqueue."""

from __future__ import annotations

from typing import Any

import pgqueue


@pgqueue.job()
def resize(consumer: pgqueue.TaskConsumer, path: str, width: int, height: int | None = None) -> str:
    """Pretend to resize an image."""
    return f"{path}@{width}x{height or width}"


@pgqueue.job()
def flexible(consumer: pgqueue.TaskConsumer, **kwargs: Any) -> dict[str, Any]:
    """Takes anything: its arguments are not checked."""
    return kwargs


@pgqueue.job()
async def notify(consumer: pgqueue.TaskConsumer, *, user: str, text: str = "") -> str:
    """An async job with keyword-only parameters."""
    return f"{user}: {text}"


class Report(pgqueue.Job):
    """A class-based job with a fixed signature."""

    def __call__(self, consumer: pgqueue.TaskConsumer, day: str) -> str:
        return day

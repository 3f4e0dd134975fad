"""Jobs of the operators' bug tests (metrics, worker options)."""

from __future__ import annotations

from pathlib import Path

import pgqueue
from pgqueue._retry import ExponentialBackoff


@pgqueue.job(max_retries=1, backoff=ExponentialBackoff(base=0.0, jitter=0.0))
def flaky(consumer: pgqueue.TaskConsumer, marker: str) -> str:
    """Fail the first attempt (creating ``marker``) and be retried at once; then succeed."""
    path = Path(marker)
    if not path.exists():
        path.write_text("ran once")
        raise RuntimeError("first attempt fails on purpose")
    return "second time lucky"


@pgqueue.job()
def echo(consumer: pgqueue.TaskConsumer, text: str = "") -> str:
    """Return ``text``."""
    return text


@pgqueue.periodic_job(run_every=3600, queue="elsewhere")
def hourly_elsewhere(consumer: pgqueue.TaskConsumer) -> None:
    """A periodic job on a queue the tests' workers do not consume."""


@pgqueue.job()
def fails(consumer: pgqueue.TaskConsumer) -> None:
    """Always raise an error whose message spans two lines."""
    raise ValueError("first line\nsecond line")

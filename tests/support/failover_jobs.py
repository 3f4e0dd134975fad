"""Jobs of the failover tests. Each allows one retry, soon after: a claim that committed on
the primary while its answer was lost with the connection leaves a task STARTED under a
worker that never received it, and that worker's own orphan rescue settles it one lease
later, counting the attempt (the execution contract); with a retry left, it runs again."""

from __future__ import annotations

import time

import pgqueue
from tests.support.crash_jobs import FAST


@pgqueue.job(max_retries=1, backoff=FAST)
def nap(consumer: pgqueue.TaskConsumer, seconds: float) -> float:
    """Sleep, then return the seconds slept."""
    time.sleep(seconds)
    return seconds


@pgqueue.job(max_retries=1, backoff=FAST)
def total(consumer: pgqueue.TaskConsumer, a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

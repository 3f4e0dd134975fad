"""The jobs pgqueue runs in the benchmarks."""

from __future__ import annotations

import sys
import time
from typing import Any

from pgqueue import job


@job()
def noop(consumer: Any) -> None:
    """Does nothing: the drain measures the queue, not the job."""


@job()
def pickup(consumer: Any, key: str) -> None:
    """Prints when it started, for the pickup-latency measurement."""
    print(f"STARTED {key} {time.time()!r}", flush=True, file=sys.stdout)


@job(concurrency=1_000_000)
def noop_loose(consumer: Any) -> None:
    """A no-op with a concurrency limit that never binds: what limits cost when not binding."""


@job(concurrency=2, limit_key="key")
def noop_per_key(consumer: Any, key: str) -> None:
    """A no-op limited to 2 running per ``key`` (the flow scenario's 1,000 tenants)."""

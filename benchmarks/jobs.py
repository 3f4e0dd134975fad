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

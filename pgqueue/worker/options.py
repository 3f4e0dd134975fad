"""The checks a :class:`~pgqueue.worker.Worker` makes of its options before it builds anything,
and the identity it registers under."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence

from .._errors import ConfigurationError
from .._jobs import JobRegistry
from .activity import SUMMARY_EVERY_MAX

#: Tasks a worker runs at once unless told otherwise (``Worker(backlog=...)``,
#: ``pgqueue-worker --backlog``): the top of the 5 to 10 that pulsar's documentation of
#: ``backlog`` names as usual. A claim takes at most the free slots, so the backlog is also the
#: largest claim: with no-op jobs ``pgqueue-worker`` drained about 2,400 tasks/s at 4, 3,600 at
#: 8 and 4,000 at 10 (docs/guides/performance.md). It costs threads, not connections: a
#: worker's connection count does not depend on it.
DEFAULT_BACKLOG = 10

#: The values of ``Worker(queue_order=...)`` and ``pgqueue-worker --queue-order``.
QUEUE_ORDERS = ("strict", "fair")


def worker_identity() -> str:
    """``host:pid:random``: unique to this process start, even when a pid is reused."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def check_options(
    backlog: int, queue_order: str, poll_timeout: float, lease: float, log_summary_every: float
) -> None:
    """Refuse the options a worker cannot run with.

    :raises pgqueue._errors.ConfigurationError: a backlog below 1, an unknown ``queue_order``,
        a non-positive ``poll_timeout`` or ``lease``, or a ``log_summary_every`` outside
        (0, 86400] seconds.
    """
    if backlog < 1:
        raise ConfigurationError("backlog must be at least 1")
    if queue_order not in QUEUE_ORDERS:
        raise ConfigurationError(
            f"queue_order must be one of {', '.join(QUEUE_ORDERS)}, not {queue_order!r}"
        )
    if poll_timeout <= 0 or lease <= 0:
        raise ConfigurationError("poll_timeout and lease must be positive seconds")
    if not 0 < log_summary_every <= SUMMARY_EVERY_MAX:  # NaN fails too
        raise ConfigurationError(
            f"log_summary_every must be more than 0 and at most {SUMMARY_EVERY_MAX:.0f} "
            f"seconds (a day), not {log_summary_every!r}"
        )


def worker_registry(registry: JobRegistry | None, task_paths: Sequence[str]) -> JobRegistry:
    """``registry``, or the jobs of the modules ``task_paths``, refusing an empty one.

    :raises pgqueue._errors.ConfigurationError: no jobs at all.
    """
    registry = registry if registry is not None else JobRegistry.load(task_paths)
    if not len(registry):
        raise ConfigurationError(
            f"no jobs in task paths {', '.join(task_paths) or '(none)'}: a worker without "
            "jobs could never claim a task. Name the modules that define your jobs."
        )
    return registry

"""The worker's activity summary: one INFO line per interval instead of two per task.

A line per task start and finish cost a ``pgqueue-worker`` draining no-op jobs about a third
of its throughput (~40 µs of Python logging per task, on the threads that claim and write).
So at INFO the worker logs, every ``every`` seconds in which tasks ended::

    last 10.0s: 1,234 tasks ended (SUCCESS 1,230, RETRY 3, FAILURE 1), 123.4/s, mean run 5.2 ms

and the remainder when it stops. The per-task lines are still there: a start and a success at
DEBUG (``--log-level DEBUG``), a retry at WARNING and a failure at ERROR, one line each, as
before. With the JSON log format the numbers are fields of the record too (``ended``,
``per_second``, ``mean_run``, one per state name).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime

from .. import states
from .._service import Service
from .._task import Task
from .outcome import Outcome

logger = logging.getLogger("pgqueue.worker")

#: Seconds between two summary lines, by default (``pgqueue-worker --log-summary-every``).
SUMMARY_EVERY = 10.0


class ActivityLog(Service):
    """Counts the outcomes a worker wrote and logs their summary every ``every`` seconds.

    A :class:`~pgqueue.worker.events.Subscriber` of the worker's events (told on the
    completer's thread, so it only counts under a lock); its own thread writes the lines.
    Nothing is logged for an interval in which no task ended, and nothing at all unless the
    ``pgqueue.worker`` logger is enabled for INFO.

    :param every: seconds between two lines (> 0).
    """

    def __init__(self, every: float = SUMMARY_EVERY) -> None:
        super().__init__("pgqueue-activity")
        if every <= 0:
            raise ValueError("the summary interval must be positive seconds")
        self.every = every
        self._lock = threading.Lock()
        self._counts: Counter[int] = Counter()
        self._run_seconds = 0.0
        self._since = time.monotonic()

    def claimed(self, tasks: list[Task]) -> None:
        """Claims are not summarised (a task is counted once, when its outcome is written)."""

    def finished(self, outcomes: list[Outcome], written: Mapping[str, datetime | None]) -> None:
        """Count the outcomes of a committed write (those fenced off are not counted)."""
        ended: Counter[int] = Counter()
        run_seconds = 0.0
        for outcome in outcomes:
            if outcome.task.id not in written:
                continue
            time_ended = written[outcome.task.id]
            ended[outcome.status] += 1
            started = outcome.task.time_started
            if started is not None and time_ended is not None:
                run_seconds += (time_ended - started).total_seconds()
        with self._lock:
            self._counts.update(ended)
            self._run_seconds += run_seconds

    def first_delay(self) -> float:
        """The first line comes one interval after the start."""
        return self.every

    def run_once(self) -> float:
        """Log the interval's summary (if any task ended in it); wait for the next."""
        self.log_summary()
        return self.every

    def close(self) -> None:
        """At the worker's stop: log what ended since the last line."""
        self.log_summary()

    def log_summary(self) -> None:
        """Log one line for what ended since the last one, and start counting anew."""
        now = time.monotonic()
        with self._lock:
            ended, self._counts = self._counts, Counter()
            run_seconds, self._run_seconds = self._run_seconds, 0.0
            seconds, self._since = now - self._since, now
        total = ended.total()
        if not total or not logger.isEnabledFor(logging.INFO):
            return
        by_state = {states.status_string(status): n for status, n in sorted(ended.items())}
        per_second = total / seconds if seconds > 0 else 0.0
        mean_run = run_seconds / total
        logger.info(
            "last %.1fs: %s %s ended (%s), %.1f/s, mean run %s",
            seconds,
            f"{total:,}",
            "task" if total == 1 else "tasks",
            ", ".join(f"{name} {n:,}" for name, n in by_state.items()),
            per_second,
            _duration(mean_run),
            extra={
                "ended": total,
                "per_second": round(per_second, 1),
                "mean_run": round(mean_run, 6),
                **by_state,
            },
        )


def _duration(seconds: float) -> str:
    """``5.2 ms`` below a second, ``3.4 s`` above."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"

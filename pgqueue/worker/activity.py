"""The worker's activity summary: one INFO line per interval instead of two per task.

A line per task start and finish cost a ``pgqueue-worker`` draining no-op jobs about a third
of its throughput (~40 µs of Python logging per task, on the threads that claim and write).
So at INFO the worker logs, every ``every`` seconds in which tasks ended::

    last 10.0s: 1,234 runs ended (SUCCESS 1,230, RETRY 3, FAILURE 1), 123.4/s, mean run 5.2 ms

and the remainder when it stops. A run is one attempt: a task retried once counts a RETRY and
then its last state. The mean run time is that of the runs that ended the task (a RETRY's row
keeps no end time), left out when there were none. The per-task lines are still there: a
start and a success at DEBUG (``--log-level DEBUG``), a retry at WARNING and a failure at
ERROR, one line each, as before. With the JSON log format the numbers are fields of the record
too (``ended``, ``per_second``, ``mean_run`` when there is one, a count per state name).
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

#: Seconds between two summary lines, by default (``pgqueue-worker --log-summary-every``),
#: and the longest interval allowed (a day).
SUMMARY_EVERY = 10.0
SUMMARY_EVERY_MAX = 86_400.0


class ActivityLog(Service):
    """Counts the outcomes a worker wrote and logs their summary every ``every`` seconds.

    A :class:`~pgqueue.worker.events.Subscriber` of the worker's events (told on the
    completer's thread, so it only counts under a lock); its own thread writes the lines.
    Nothing is logged for an interval in which no task ended, and nothing at all unless the
    ``pgqueue.worker`` logger is enabled for INFO.

    :param every: seconds between two lines, more than 0 and at most
        :data:`SUMMARY_EVERY_MAX`; :class:`ValueError` otherwise.
    """

    def __init__(self, every: float = SUMMARY_EVERY) -> None:
        super().__init__("pgqueue-activity")
        if not 0 < every <= SUMMARY_EVERY_MAX:  # NaN fails too
            raise ValueError(
                f"the summary interval must be more than 0 and at most {SUMMARY_EVERY_MAX:.0f} "
                f"seconds, not {every!r}"
            )
        self.every = every
        self._lock = threading.Lock()
        self._counts: Counter[int] = Counter()
        self._run_seconds = 0.0
        self._timed = 0  # runs with an end time, those the mean is over
        self._since = time.monotonic()

    def claimed(self, tasks: list[Task]) -> None:
        """Claims are not summarised (a task is counted once, when its outcome is written)."""

    def finished(self, outcomes: list[Outcome], written: Mapping[str, datetime | None]) -> None:
        """Count the outcomes of a committed write (those fenced off are not counted)."""
        ended: Counter[int] = Counter()
        run_seconds, timed = 0.0, 0
        for outcome in outcomes:
            if outcome.task.id not in written:
                continue
            time_ended = written[outcome.task.id]
            ended[outcome.status] += 1
            started = outcome.task.time_started
            if started is not None and time_ended is not None:
                run_seconds += (time_ended - started).total_seconds()
                timed += 1
        with self._lock:
            self._counts.update(ended)
            self._run_seconds += run_seconds
            self._timed += timed

    def first_delay(self) -> float:
        """The first line comes one interval after the start."""
        with self._lock:
            self._since = time.monotonic()
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
            timed, self._timed = self._timed, 0
            seconds, self._since = now - self._since, now
        total = ended.total()
        if not total or not logger.isEnabledFor(logging.INFO):
            return
        by_state = {states.status_string(status): n for status, n in sorted(ended.items())}
        per_second = total / seconds if seconds > 0 else 0.0
        fields: dict[str, float] = {"ended": total, "per_second": round(per_second, 1)}
        mean = ""
        if timed:
            fields["mean_run"] = round(run_seconds / timed, 6)
            mean = f", mean run {_duration(run_seconds / timed)}"
        logger.info(
            "last %.1fs: %s %s ended (%s), %.1f/s%s",
            seconds,
            f"{total:,}",
            "run" if total == 1 else "runs",
            ", ".join(f"{name} {n:,}" for name, n in by_state.items()),
            per_second,
            mean,
            extra={**fields, **by_state},
        )


def _duration(seconds: float) -> str:
    """``5.2 ms`` below a second, ``3.4 s`` above."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"

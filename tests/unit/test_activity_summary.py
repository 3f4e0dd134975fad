"""The worker's INFO summary (``pgqueue.worker.activity``): its numbers and its interval."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

import pytest

from pgqueue import states
from pgqueue._errors import ConfigurationError
from pgqueue._task import Task
from pgqueue.worker import Worker
from pgqueue.worker.activity import ActivityLog
from pgqueue.worker.outcome import Outcome


def _outcome(task_id: str, status: int, ran: float) -> Outcome:
    started = datetime.now(UTC) - timedelta(seconds=ran)
    task = Task(id=task_id, name="job", queue="tasks", lock_id=None, status=5)
    return Outcome(task=Task(**{**task.__dict__, "time_started": started}), status=status)


def _summaries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if " ended (" in r.getMessage()]


def test_the_mean_run_is_over_the_runs_that_have_an_end_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A RETRY is written without an end time: it counts as a run that ended, and the mean is
    over the others (a tester saw four 1-second retries summed up as 'mean run 0.0 ms')."""
    caplog.set_level(logging.INFO, logger="pgqueue.worker")
    log = ActivityLog(every=10)
    retries = [_outcome(f"r{i}", states.RETRY, 1.0) for i in range(4)]
    log.finished(retries, {o.task.id: None for o in retries})
    log.log_summary()
    (only_retries,) = _summaries(caplog)
    assert only_retries.getMessage().startswith("last ")
    assert "4 runs ended (RETRY 4)" in only_retries.getMessage()
    assert "mean run" not in only_retries.getMessage()
    assert not hasattr(only_retries, "mean_run") and only_retries.RETRY == 4
    done = [_outcome("s", states.SUCCESS, 2.0), _outcome("r", states.RETRY, 1.0)]
    now = datetime.now(UTC)
    log.finished(done, {"s": now, "r": None})
    log.log_summary()
    second = _summaries(caplog)[1]
    assert "2 runs ended (SUCCESS 1, RETRY 1)" in second.getMessage()
    assert 1.9 < second.mean_run < 2.5 and "mean run 2." in second.getMessage()


def test_fenced_off_outcomes_and_quiet_intervals_log_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pgqueue.worker")
    log = ActivityLog(every=10)
    log.log_summary()
    log.finished([_outcome("x", states.SUCCESS, 0.1)], {})  # not written: fenced off
    log.log_summary()
    assert _summaries(caplog) == []


@pytest.mark.parametrize("every", [0.0, -1.0, math.nan, math.inf, 1e10, 86_401.0])
def test_a_summary_interval_outside_a_day_is_refused(every: float) -> None:
    """Beyond a day (1e10 s, inf) the summary thread's wait overflowed and the thread died
    with a raw traceback; NaN passed the check and the thread spun."""
    with pytest.raises(ValueError, match="summary interval"):
        ActivityLog(every=every)
    with pytest.raises(ConfigurationError, match="log_summary_every"):
        Worker(
            "host=/nonexistent dbname=x",
            registry=None,
            task_paths=["tests.support.jobs"],
            log_summary_every=every,
        )

"""Periodic jobs for the schedule action tests (pause, resume, trigger) run by real workers
(``pgqueue-worker --schedule-periodic --task-paths tests.support.schedule_action_jobs``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pgqueue

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


@pgqueue.periodic_job(run_every=1, anchor=ANCHOR, missed="skip")
def beat(consumer: pgqueue.TaskConsumer) -> str:
    """Ticks every second; returns the tick it was queued for."""
    return str(consumer.task.meta_params["tick"])


@pgqueue.periodic_job(cron="0 3 1 1 *", timezone="UTC", can_overlap=False)
def yearly(consumer: pgqueue.TaskConsumer) -> str:
    """Never due while a test runs (03:00 on 1 January): only an operator's trigger runs it."""
    return str(consumer.task.meta_params.get("triggered_by"))


@pgqueue.periodic_job(
    cron="0 4 1 1 *",
    timezone="UTC",
    can_overlap=False,
    queue="reports",
    priority=7,
    max_retries=2,
    timeout=600,
)
def yearly_report(consumer: pgqueue.TaskConsumer) -> str:
    """Never due while a test runs, on a queue and with options of its own: a trigger must
    queue it as a tick would (queue ``reports``, priority 7, two retries, expiry, lock)."""
    return str(consumer.task.meta_params.get("triggered_by"))

"""Periodic jobs for the scheduling tests run by real worker processes
(``pgqueue-worker --schedule-periodic --task-paths tests.support.schedule_jobs``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pgqueue

#: Ticks of :func:`every_second` fall on whole seconds.
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


@pgqueue.periodic_job(run_every=1, anchor=ANCHOR, missed="all", backfill_limit=1000)
def every_second(consumer: pgqueue.TaskConsumer) -> str:
    """Record the tick this task was queued for in test_ticks (made by the test)."""
    tick = str(consumer.task.meta_params["tick"])
    with consumer.backend.connection() as conn:
        conn.execute(
            "INSERT INTO test_ticks (tick, task_id) VALUES (%s::timestamptz, %s::uuid)",
            (tick, consumer.task_id),
        )
    return tick


class Daily(pgqueue.PeriodicJob):
    """Once a day at 03:00 in Berlin; never due while the tests run a worker for seconds."""

    cron = "0 3 * * *"
    timezone = "Europe/Berlin"

    def __call__(self, consumer: pgqueue.TaskConsumer) -> None:
        return None

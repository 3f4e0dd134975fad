"""Jobs of the integration tests: defaults for queue and priority set on the job."""

from __future__ import annotations

import pgqueue


@pgqueue.job(queue="mail", priority=5)
def send_mail(consumer: pgqueue.TaskConsumer, to: str) -> str:
    """Pretend to send an e-mail; queued to "mail" at priority 5 unless the call says else."""
    return to


class Report(pgqueue.Job):
    """A class-based job with defaults: queue "reports", priority -1."""

    queue = "reports"
    priority = -1

    def __call__(self, consumer: pgqueue.TaskConsumer, n: int) -> int:
        return n


@pgqueue.job()
async def queue_child_async(consumer: pgqueue.TaskConsumer, a: int) -> str | None:
    """An async job queueing another task with the awaitable API, on the worker's loop."""
    return await consumer.backend.aqueue_task("add", a=a, b=1)

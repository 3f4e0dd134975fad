"""The shop's jobs."""

from __future__ import annotations

import pgqueue

#: What the jobs did, by task id (a real app would write to its database).
SENT: dict[str, str] = {}
SURVEYED: list[str] = []


@pgqueue.job()
def send_receipt(consumer: pgqueue.TaskConsumer, order_id: int, email: str) -> str:
    """Send the receipt of an order; queue a survey after it."""
    SENT[consumer.task_id] = email
    consumer.backend.queue_task("ask_survey", email=email)
    return f"receipt {order_id} to {email}"


@pgqueue.job()
def ask_survey(consumer: pgqueue.TaskConsumer, email: str) -> str:
    """Ask the customer how it went."""
    SURVEYED.append(email)
    return f"survey to {email}"


@pgqueue.job(max_retries=2, backoff=pgqueue.ExponentialBackoff(base=0.0, jitter=0.0))
def flaky_charge(consumer: pgqueue.TaskConsumer, order_id: int) -> str:
    """Fails on its first attempt, then succeeds (retries as in production)."""
    if consumer.task.attempts < 2:
        raise RuntimeError("card network timeout")
    return f"charged {order_id}"


@pgqueue.job(can_overlap=False)
def rebuild_index(consumer: pgqueue.TaskConsumer, shard: int) -> int:
    """One live task per shard."""
    return shard

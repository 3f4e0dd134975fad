"""Jobs of the flow-control tests (issue 13): limited per tenant, per job, and not at all."""

from __future__ import annotations

import time

import pgqueue


@pgqueue.job(concurrency=2, limit_key="tenant", queue="flow")
def per_tenant(consumer: pgqueue.TaskConsumer, tenant: str, seconds: float) -> str:
    """Runs ``seconds``; at most 2 per tenant at once."""
    time.sleep(seconds)
    return tenant


@pgqueue.job(concurrency=1, queue="flow")
def one_at_a_time(consumer: pgqueue.TaskConsumer, seconds: float) -> float:
    """Runs ``seconds``; at most 1 at once, whatever its kwargs."""
    time.sleep(seconds)
    return seconds


@pgqueue.job(queue="flow")
def unlimited(consumer: pgqueue.TaskConsumer, seconds: float) -> float:
    """Runs ``seconds``; no limit."""
    time.sleep(seconds)
    return seconds


def _region(**kwargs: object) -> str:
    return f"region-{kwargs['region']}"


@pgqueue.job(concurrency=3, limit_key=_region, queue="flow")
def per_region(consumer: pgqueue.TaskConsumer, region: str) -> str:
    """Limited per the key a callable computes."""
    return region


@pgqueue.job(rate_limit=(3, 1.0), limit_key="tenant", queue="rated")
def rated(consumer: pgqueue.TaskConsumer, tenant: str) -> str:
    """At most 3 starts per second per tenant."""
    return tenant


@pgqueue.job(queue="rated")
def free(consumer: pgqueue.TaskConsumer, n: int) -> int:
    """No limit of its own."""
    return n


@pgqueue.job(unique_for=2.0, queue="flow")
def once_a_while(consumer: pgqueue.TaskConsumer, key: str) -> str:
    """A copy is refused for 2 s after one starts."""
    return key


@pgqueue.job(can_overlap=False, queue="flow")
def reindex(consumer: pgqueue.TaskConsumer, doc: str) -> str:
    """Debounced by its callers."""
    return doc


@pgqueue.job(concurrency=1, limit_key="tenant", queue="turns")
def one_per_tenant(consumer: pgqueue.TaskConsumer, tenant: str, seconds: float) -> str:
    """Runs ``seconds``; at most 1 per tenant at once (the round-robin tests)."""
    time.sleep(seconds)
    return tenant


@pgqueue.job(rate_limit=(2, 60.0), concurrency=5, limit_key="tenant", queue="turns")
def rated_per_tenant(consumer: pgqueue.TaskConsumer, tenant: str) -> str:
    """At most 2 starts a minute and 5 at once per tenant."""
    return tenant

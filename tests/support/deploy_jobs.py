"""Jobs of the test of the deploy files (tests/test_deploy_files.py): enough kinds of work for
a worker to emit every series its Grafana dashboard and alert rules use."""

from __future__ import annotations

import pgqueue


@pgqueue.periodic_job(run_every=1)
def every_second(consumer: pgqueue.TaskConsumer) -> None:
    """A periodic job ticking every second, so the scheduler's series have samples."""


@pgqueue.job()
def succeed(consumer: pgqueue.TaskConsumer) -> str:
    """Succeed."""
    return "ok"


@pgqueue.job(max_retries=1, backoff=pgqueue.ExponentialBackoff(base=0.0))
def always_fail(consumer: pgqueue.TaskConsumer) -> None:
    """Fail twice: the first attempt is retried at once, the second ends FAILURE."""
    raise RuntimeError("fails on purpose")

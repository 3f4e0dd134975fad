"""How one execution ended: the :class:`Outcome` the executor hands to the completer.

The rules (see :mod:`pgqueue._retry`): a job that returned ends SUCCESS with its result as
JSON, even if a revoke request arrived meanwhile (F26), unless the attempt ran past its
``time_limit``: then it ends like one that raised ``TimeLimitExceeded``. A job that raised
``Revoked``, was cancelled, or raised anything after a revoke request ends REVOKED; any other
error ends RETRY (with the delay of the job's backoff) or FAILURE once its retries are used up
or the error is not retried.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import traceback
from dataclasses import dataclass
from typing import Any

from .. import states
from .._consumer import TaskConsumer
from .._retry import Revoked, TimeLimitExceeded, decide
from .._task import Task
from .._values import dump_json


@dataclass(frozen=True)
class Outcome:
    """How one execution ended, waiting to be written: the task as claimed, the new status
    (:mod:`pgqueue.states`), the result as JSON text, the error and traceback, and for RETRY
    the ``delay`` in seconds before the next attempt."""

    task: Task
    status: int
    result: str | None = None
    error: str | None = None
    traceback: str | None = None
    delay: float | None = None


def outcome_of(consumer: TaskConsumer, future: concurrent.futures.Future[Any]) -> Outcome:
    """Turn a finished job future into the outcome to record (see :mod:`pgqueue._retry`)."""
    task, job = consumer.task, consumer.job
    exc = future.exception() if not future.cancelled() else asyncio.CancelledError()
    if exc is None:
        if consumer.time_limit_exceeded():  # returned, but too late: README, time limits
            limit = job.time_limit_seconds()
            late = TimeLimitExceeded(f"{task.info()} returned after its time limit of {limit}s")
            return failure(consumer, late)
        try:
            return Outcome(
                task, states.SUCCESS, dump_json(future.result(), f"the result of job {job.name!r}")
            )
        except Exception as encode_error:
            exc = encode_error
    if isinstance(exc, Revoked):
        return Outcome(task, states.REVOKED, error=str(exc))
    if consumer.revoked:  # stopped (cancelled, or raised) after the revoke request
        return Outcome(task, states.REVOKED, error="revoked while running")
    return failure(consumer, exc)


def failure(consumer: TaskConsumer, exc: BaseException) -> Outcome:
    """RETRY or FAILURE for an attempt that raised ``exc`` (see :mod:`pgqueue._retry`)."""
    task, job = consumer.task, consumer.job
    decision = decide(
        exc,
        attempt=task.attempts,
        max_retries=task.max_retries,
        retry_on=job.retry_on,
        backoff=job.backoff,
    )
    return Outcome(
        task,
        states.FAILURE if decision.delay is None else states.RETRY,
        error=decision.error,
        traceback="".join(traceback.format_exception(exc)),
        delay=decision.delay,
    )


def not_started(task: Task, exc: Exception, why: str = "could not start") -> Outcome:
    """FAILURE for a task whose job could not even be called, e.g. kwargs that are a JSON
    array written by plain SQL: retrying could not help, and the rest of its claim runs on.
    Also for a task whose outcome could not be computed (``why``; a job's backoff that
    raised, say): one task's data ends that task, never the worker (F24)."""
    return Outcome(
        task,
        states.FAILURE,
        error=f"{why}: {type(exc).__name__}: {exc}",
        traceback="".join(traceback.format_exception(exc)),
    )

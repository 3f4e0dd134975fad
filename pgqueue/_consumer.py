"""The :class:`TaskConsumer` a job receives (pulsar's ``TaskConsumer``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ._backend import TaskBackend
from ._jobs import Job
from ._retry import Revoked, TimeLimitExceeded
from ._task import Task


@dataclass(frozen=True)
class ParentResult:
    """What a dependent task sees of one parent (:meth:`TaskConsumer.parent_results`):
    ``name`` (its job), ``state`` (``"SUCCESS"``, ``"FAILURE"`` or ``"REVOKED"``),
    ``result`` (its JSON result, None unless SUCCESS) and ``error`` (why it failed or was
    revoked)."""

    name: str
    state: str
    result: Any
    error: str | None


class TaskConsumer:
    """What a running job gets as its first argument.

    * ``task_id`` (str): the id of the task being run; ``task``: the :class:`Task` as claimed.
    * ``job``: the :class:`pgqueue.Job` that made the task.
    * ``worker`` (str): identity of the worker process running it.
    * ``backend``: a :class:`TaskBackend` on the same database, so a job can queue more tasks.
    * ``logger``: a logger named ``pgqueue.job.<job name>``.
    * ``revoked`` (bool): set by the worker once the task is revoked while it runs.
    * ``lease_lost`` (bool): set by the worker once it learned that this execution is no
      longer its own (the worker was frozen past its lease and the task was rescued); the
      job must stop, and nothing it does is recorded.
    * ``deadline`` (float | None): ``time.monotonic()`` at which the ``time_limit`` passes.

    Long-running thread jobs should call :meth:`check` (or test :meth:`is_revoked`) now and
    then: that is how they learn of a revoke or of their ``time_limit`` (cooperative stop).
    """

    def __init__(self, backend: TaskBackend, worker: str, task: Task, job: Job) -> None:
        self.backend = backend
        self.worker = worker
        self.task = task
        self.task_id = task.id
        self.job = job
        self.logger = job.logger
        limit = job.time_limit_seconds()
        #: ``time.monotonic()`` value at which this attempt passes its time limit, or None.
        self.deadline = None if limit is None else time.monotonic() + limit
        self.revoked = False
        self.lease_lost = False

    def is_revoked(self) -> bool:
        """True once the task was revoked while running, ran past its ``time_limit``, or
        the worker lost its lease on it."""
        return self.revoked or self.lease_lost or self.time_limit_exceeded()

    def time_limit_exceeded(self) -> bool:
        """True once this attempt has run longer than the job's ``time_limit``."""
        return self.deadline is not None and time.monotonic() > self.deadline

    def check(self) -> None:
        """Raise :class:`pgqueue._retry.Revoked` if the task was revoked, or
        :class:`pgqueue._retry.TimeLimitExceeded` past the ``time_limit``; else return.
        Also raises ``Revoked`` once the worker lost its lease on this execution."""
        if self.lease_lost:
            raise Revoked(
                f"{self.task.info()} is no longer this worker's: it lost its lease (the task "
                "was rescued); stop at once"
            )
        if self.revoked:
            raise Revoked(f"{self.task.info()} was revoked while running")
        if self.time_limit_exceeded():
            raise TimeLimitExceeded(
                f"{self.task.info()} ran past its time limit of {self.job.time_limit_seconds()}s"
            )

    def parent_results(self) -> dict[str, ParentResult]:
        """The parents of this task (its ``depends_on``, a chain's previous step, a group's
        members) keyed by task id, in ``depends_on`` order (a group's: the members' order),
        each with its state and result. Read from the database on each call; a parent pruned
        since it ended is missing. Empty for a task without parents."""
        return {
            row["id"]: ParentResult(row["name"], row["state"], row["result"], row["error"])
            for row in self.backend.parents(self.task_id)
        }

    def parent_counts(self) -> dict[str, int]:
        """How many parents ended in each way: ``{"succeeded": n, "failed": n, "revoked": n}``
        (what a batch's callback, ``queue_tasks(..., then=...)``, is told)."""
        states = [result.state for result in self.parent_results().values()]
        return {
            "succeeded": states.count("SUCCESS"),
            "failed": states.count("FAILURE"),
            "revoked": states.count("REVOKED"),
        }

    @property
    def attempt(self) -> int:
        """Which attempt this is: 1 for the first run."""
        return self.task.attempts

    def __repr__(self) -> str:
        return f"<TaskConsumer {self.task.info()} on {self.worker}>"

"""The :class:`TaskConsumer` a job receives (pulsar's ``TaskConsumer``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backend import TaskBackend
    from .jobs import Job
    from .task import Task


class TaskConsumer:
    """What a running job gets as its first argument.

    * ``task_id`` (str): the id of the task being run; ``task``: the :class:`Task` as claimed.
    * ``job``: the :class:`pgqueue.Job` that made the task.
    * ``worker`` (str): identity of the worker process running it.
    * ``backend``: a :class:`TaskBackend` on the same database, so a job can queue more tasks.
    * ``logger``: a logger named ``pgqueue.job.<job name>``.
    """

    def __init__(self, backend: TaskBackend, worker: str, task: Task, job: Job) -> None:
        self.backend = backend
        self.worker = worker
        self.task = task
        self.task_id = task.id
        self.job = job
        self.logger = logging.getLogger(f"pgqueue.job.{job.name}")

    @property
    def attempt(self) -> int:
        """Which attempt this is: 1 for the first run."""
        return self.task.attempts

    def __repr__(self) -> str:
        return f"<TaskConsumer {self.task.info()} on {self.worker}>"

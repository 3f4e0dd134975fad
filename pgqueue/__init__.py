"""pgqueue: a durable job queue for Python that lives in PostgreSQL.

Descends from the task backend of pulsar 0.9: tasks are rows of ``pgqueue.task``, claimed with
``SELECT ... FOR UPDATE SKIP LOCKED``; events travel by LISTEN/NOTIFY.
"""

from importlib import metadata as _metadata

from . import states
from ._backends import get_task_backend, register_task_backend, task_backends
from .backend import TaskBackend
from .bulk import Call, QueuedTasks
from .consumer import TaskConsumer
from .errors import (
    ConfigurationError,
    ConnectionFailed,
    InvalidTaskId,
    JobArgumentError,
    PgQueueError,
    SchemaError,
    SerializationError,
    TaskNotAvailable,
    TaskNotFound,
    TaskTimeout,
)
from .jobs import Job, JobRegistry, job
from .periodic import PeriodicJob, periodic_job
from .retry import ExponentialBackoff, Retry, Revoked, TimeLimitExceeded
from .task import Task, format_time, nice_task_message
from .typed import JobOptions, TaskId
from .worker import Worker

try:
    #: The installed version of pgqueue (its package metadata).
    __version__ = _metadata.version("pgqueue")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "unknown"

__all__ = [
    "Call",
    "ConfigurationError",
    "ConnectionFailed",
    "ExponentialBackoff",
    "InvalidTaskId",
    "Job",
    "JobArgumentError",
    "JobOptions",
    "JobRegistry",
    "PeriodicJob",
    "PgQueueError",
    "QueuedTasks",
    "Retry",
    "Revoked",
    "SchemaError",
    "SerializationError",
    "Task",
    "TaskBackend",
    "TaskConsumer",
    "TaskId",
    "TaskNotAvailable",
    "TaskNotFound",
    "TaskTimeout",
    "TimeLimitExceeded",
    "Worker",
    "format_time",
    "get_task_backend",
    "job",
    "nice_task_message",
    "periodic_job",
    "register_task_backend",
    "states",
    "task_backends",
]

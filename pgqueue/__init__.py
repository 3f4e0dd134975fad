"""pgqueue: a durable job queue for Python that lives in PostgreSQL.

Descends from the task backend of pulsar 0.9: tasks are rows of ``pgqueue.task``, claimed with
``SELECT ... FOR UPDATE SKIP LOCKED``; events travel by LISTEN/NOTIFY.

``import pgqueue`` loads the core and the client (what an application that only queues tasks
needs); :class:`Worker` and the worker services load on first use of ``pgqueue.Worker``.
Neither the command line (typer, rich) nor the dashboard (starlette) is loaded.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

from . import states
from ._backend import TaskBackend
from ._backends import get_task_backend, register_task_backend, task_backends
from ._bulk import Call, QueuedTasks
from ._consumer import TaskConsumer
from ._errors import (
    ConfigurationError,
    ConnectionFailed,
    DependencyError,
    InvalidTaskId,
    JobArgumentError,
    PgQueueError,
    SchemaError,
    SerializationError,
    TaskNotAvailable,
    TaskNotFound,
    TaskTimeout,
    UnknownQueue,
    UnknownSchedule,
)
from ._jobs import Job, JobRegistry, job
from ._periodic import PeriodicJob, periodic_job
from ._retry import ExponentialBackoff, Retry, Revoked, TimeLimitExceeded
from ._task import Task, format_time, nice_task_message
from ._typed import EnqueueOptions, TaskId
from .states import RevokeResult

if TYPE_CHECKING:
    from .worker import Worker

try:
    __version__: str = metadata.version("pgqueue")
except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Call",
    "ConfigurationError",
    "ConnectionFailed",
    "DependencyError",
    "EnqueueOptions",
    "ExponentialBackoff",
    "InvalidTaskId",
    "Job",
    "JobArgumentError",
    "JobRegistry",
    "PeriodicJob",
    "PgQueueError",
    "QueuedTasks",
    "Retry",
    "RevokeResult",
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
    "UnknownQueue",
    "UnknownSchedule",
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

#: Public names defined in the worker layer, by module: loaded by :func:`__getattr__`.
_LAZY = {"Worker": "pgqueue.worker"}


def __getattr__(name: str) -> Any:
    """Load a worker-side name (``pgqueue.Worker``) on first use (PEP 562).

    Raises :class:`AttributeError` for any other unknown name, as a module does.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups find it without calling this again
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

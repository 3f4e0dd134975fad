"""Exceptions raised by pgqueue. Every message says what went wrong and what to do."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none: what
    logs and command-line errors show of a driver's multi-line messages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PgQueueError(Exception):
    """Base class of every error pgqueue raises on purpose."""


class TaskNotAvailable(PgQueueError):
    """The job name is not in the registry (pulsar's ``TaskNotAvailable``); nothing was queued."""

    def __init__(self, task_name: str, known: list[str] | None = None) -> None:
        self.task_name = task_name
        hint = f" Registered jobs: {', '.join(sorted(known))}." if known else ""
        super().__init__(
            f"Task {task_name!r} is not registered.{hint} "
            "Check the job name and the task_paths the backend was given."
        )


class TaskTimeout(PgQueueError):
    """``wait_for_task`` gave up before the task reached a ready state."""


class SerializationError(PgQueueError, TypeError):
    """Task arguments or a result could not be encoded as JSON; nothing was written."""


class SchemaError(PgQueueError):
    """The database has no pgqueue schema, or an older one than this pgqueue needs."""


class ConnectionFailed(PgQueueError):
    """The database could not be reached with the given DSN (the password is never shown)."""


class ConfigurationError(PgQueueError, ValueError):
    """An argument or setting is invalid (for example a naive datetime for ``expiry``)."""


class JobArgumentError(ConfigurationError, TypeError):
    """The kwargs of a task do not fit its job's signature (an unknown or a missing argument);
    nothing was queued. A :class:`ConfigurationError` (so ``except ValueError`` catches it)
    and a ``TypeError``, as calling the function with them would raise."""


class UnknownQueue(ConfigurationError, LookupError):
    """A queue no task and no worker ever used (and without settings): most likely a typo;
    nothing was changed. Raised by :meth:`TaskBackend.pause_queue`, ``resume_queue`` and
    ``pgqueue pause/resume``."""


class UnknownSchedule(ConfigurationError, LookupError):
    """No periodic job of this name has a stored schedule (a typo, or no worker started with
    ``--schedule-periodic`` has defined it yet); nothing was changed. Raised by the schedule
    actions of ``pgqueue schedule`` and the dashboard."""


class DependencyError(ConfigurationError):
    """A task was queued with ``depends_on`` naming tasks that do not exist in the backend's
    schema (never queued, pruned, or of another schema); nothing was queued. ``missing``
    holds those ids."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


class TaskNotFound(PgQueueError, KeyError):
    """No task has this id (it never existed, or it was pruned)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not found"


class InvalidTaskId(ConfigurationError, TaskNotFound):
    """A task id that is not a UUID: a usage error (a :class:`ConfigurationError`), raised by
    every call taking task ids (``get_task``, ``get_tasks``, ``wait_for_task``, ``revoke``,
    their async twins, ``pgqueue show/wait/revoke/retry``). Also a :class:`TaskNotFound`, which
    ``wait_for_task`` and ``revoke`` raised for such ids before."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not a task id"

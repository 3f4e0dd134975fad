"""pgqueue in a Django project (Django 4.2+ on psycopg 3).

Add ``"pgqueue.contrib.django"`` to ``INSTALLED_APPS`` and configure pgqueue in the settings::

    PGQUEUE = {
        "TASK_PATHS": ["shop.jobs"],  # modules that define the jobs (required)
        "QUEUE": "tasks",             # default queue (pulsar's backend name)
        "SCHEMA": "pgqueue",          # schema of pgqueue's tables
        "DATABASE": "default",        # the Django database holding the queue
        "DSN": None,                  # default: that database's own settings
    }

Then :func:`queue_task` enqueues on Django's own connection, so a task queued inside
``transaction.atomic()`` exists if and only if that transaction commits; ``manage.py migrate``
also creates and upgrades pgqueue's schema (its Alembic revisions, after Django's own
migrations); ``manage.py pgqueue_worker`` runs a worker with the project's settings loaded.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.conninfo import make_conninfo

from ..._backend import TaskBackend
from ..._errors import ConfigurationError

__all__ = ["PgQueueSettings", "backend", "connection", "get_settings", "queue_task"]

#: The keys ``settings.PGQUEUE`` may hold.
KEYS = frozenset({"TASK_PATHS", "QUEUE", "SCHEMA", "DATABASE", "DSN"})
#: Connection parameters Django passes to psycopg that are objects, not libpq settings.
_NOT_LIBPQ = frozenset({"context", "cursor_factory", "prepare_threshold", "pool"})


@dataclass(frozen=True)
class PgQueueSettings:
    """``settings.PGQUEUE`` read and checked (see the module's docstring for the keys)."""

    task_paths: tuple[str, ...]
    queue: str
    schema: str
    database: str
    dsn: str


def get_settings() -> PgQueueSettings:
    """Read ``settings.PGQUEUE``; the DSN defaults to the libpq parameters of the
    ``DATABASE`` alias's own settings (``NAME``, ``USER``, ``HOST``, ``OPTIONS``, ...).

    :raises ConfigurationError: ``PGQUEUE`` is missing or not a dict, has an unknown key,
        lacks ``TASK_PATHS``, or names a database alias that ``DATABASES`` does not define.
    """
    from django.conf import settings
    from django.db import connections

    config = getattr(settings, "PGQUEUE", None)
    if not isinstance(config, dict):
        raise ConfigurationError("settings.PGQUEUE must be a dict with at least TASK_PATHS")
    unknown = sorted(set(config) - KEYS)
    if unknown:
        raise ConfigurationError(
            f"settings.PGQUEUE: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})"
        )
    paths = config.get("TASK_PATHS")
    if isinstance(paths, str):
        paths = [paths]
    if not paths or not all(isinstance(path, str) for path in paths):
        raise ConfigurationError(
            "settings.PGQUEUE['TASK_PATHS'] must list the modules that define your jobs"
        )
    alias = str(config.get("DATABASE", "default"))
    if alias not in settings.DATABASES:
        raise ConfigurationError(
            f"settings.PGQUEUE['DATABASE'] is {alias!r}, which settings.DATABASES does not define"
        )
    dsn = config.get("DSN") or _dsn_of(connections[alias])
    return PgQueueSettings(
        task_paths=tuple(paths),
        queue=str(config.get("QUEUE", "tasks")),
        schema=str(config.get("SCHEMA", "pgqueue")),
        database=alias,
        dsn=str(dsn),
    )


def _dsn_of(wrapper: Any) -> str:
    """A libpq connection string with the parameters Django connects ``wrapper`` with."""
    if wrapper.vendor != "postgresql":
        raise ConfigurationError(
            f"settings.PGQUEUE: the database {wrapper.alias!r} is {wrapper.vendor}, "
            "pgqueue needs PostgreSQL"
        )
    params = wrapper.get_connection_params()
    return make_conninfo(
        "",
        **{
            key: value
            for key, value in params.items()
            if key not in _NOT_LIBPQ and isinstance(value, str | int)
        },
    )


_backend: TaskBackend | None = None
_backend_lock = threading.Lock()


def backend() -> TaskBackend:
    """This process's :class:`~pgqueue.TaskBackend`, made from ``settings.PGQUEUE`` on first
    use and closed at exit. Its own pool serves calls without ``connection=`` (such as
    ``wait_for_task``); :func:`queue_task` uses Django's connection instead.

    :raises ConfigurationError: as :func:`get_settings`.
    """
    global _backend
    with _backend_lock:
        if _backend is None:
            config = get_settings()
            _backend = TaskBackend(
                config.dsn,
                task_paths=list(config.task_paths),
                name=config.queue,
                schema=config.schema,
            )
            atexit.register(_backend.close)
        return _backend


def connection() -> Any:
    """Django's connection to the database that holds the queue (``PGQUEUE['DATABASE']``)."""
    from django.db import connections

    return connections[get_settings().database]


def queue_task(
    jobname: str,
    *,
    meta_params: dict[str, Any] | None = None,
    expiry: float | timedelta | datetime | None = None,
    run_at: datetime | None = None,
    countdown: float | timedelta | str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    **kwargs: Any,
) -> str | None:
    """Queue a task of ``jobname`` on Django's own connection: inside
    ``transaction.atomic()`` it is written in that transaction (no worker sees it before the
    commit, a rollback removes it); outside one it commits at once, as Django's autocommit
    does. The arguments are those of :meth:`pgqueue.TaskBackend.queue_task`.

    :return: the task id, or None when a live task of a ``can_overlap=False`` job holds the
        same lock.
    :raises JobArgumentError: ``kwargs`` do not fit the job's signature.
    :raises TaskNotAvailable: no job is called ``jobname`` in ``TASK_PATHS``.
    :raises SerializationError: an argument is not JSON.
    :raises ConfigurationError: as :func:`get_settings`, or the database is not PostgreSQL
        on psycopg 3.
    """
    return backend().queue_task(
        jobname,
        meta_params=meta_params,
        expiry=expiry,
        run_at=run_at,
        countdown=countdown,
        queue=queue,
        priority=priority,
        connection=connection(),
        **kwargs,
    )

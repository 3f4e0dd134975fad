"""Backend classes selected by a connection string's scheme (pulsar's ``task_backends``).

Pulsar registered a backend class under a URL scheme (``tasks.task_backends['mybackend'] =
TaskBackend``) and chose it from the connection string (``--task-backend
mybackend://host:port``). pgqueue keeps that contract for subclasses of
:class:`~pgqueue.TaskBackend`: every backend talks to PostgreSQL, so a registered scheme
selects the class and the rest of the URL is the PostgreSQL connection it is given::

    class AuditedBackend(pgqueue.TaskBackend): ...

    pgqueue.register_task_backend("audited", AuditedBackend)
    backend = pgqueue.get_task_backend("audited://app@db/orders", task_paths=["app.jobs"])
    # an AuditedBackend connected to postgresql://app@db/orders
"""

from __future__ import annotations

import os
import re
from typing import Any

from . import _db
from ._backend import TaskBackend
from ._errors import ConfigurationError

#: Backend classes by URL scheme (pulsar's ``task_backends``). ``postgresql`` and
#: ``postgres`` (libpq's own schemes) select :class:`TaskBackend`.
task_backends: dict[str, type[TaskBackend]] = {
    "postgresql": TaskBackend,
    "postgres": TaskBackend,
}


def register_task_backend(scheme: str, cls: type[TaskBackend]) -> type[TaskBackend]:
    """Register ``cls`` (a :class:`TaskBackend` subclass) under ``scheme``; returns ``cls``,
    so it also works as a class decorator through ``functools.partial``.

    Raises :class:`ConfigurationError` for a scheme that is not a URL scheme (letters, then
    letters, digits, ``+``, ``-`` or ``.``) or a class that is not a TaskBackend.
    """
    if not (isinstance(scheme, str) and _URL.match(f"{scheme}://")):
        raise ConfigurationError(f"a task backend scheme must be a URL scheme, not {scheme!r}")
    if not (isinstance(cls, type) and issubclass(cls, TaskBackend)):
        raise ConfigurationError(
            f"task backend {scheme!r} must be a subclass of pgqueue.TaskBackend, not {cls!r}"
        )
    task_backends[scheme.lower()] = cls
    return cls


def get_task_backend(url: str | None = None, **options: Any) -> TaskBackend:
    """The backend a connection string selects, connected (lazily) to its database.

    :param url: ``<scheme>://...``: the class registered under ``scheme`` (see
        :data:`task_backends`), given the same URL with the scheme ``postgresql``. A libpq
        key=value string selects :class:`TaskBackend`. None reads ``$PGQUEUE_DSN``.
    :param options: the other arguments of :class:`TaskBackend` (``task_paths``, ``name``,
        ``registry``, ``schema``, ``pool_size``).
    :raises ConfigurationError: an unknown scheme (the message lists the registered ones),
        or a missing DSN.
    """
    value = url or os.environ.get(_db.DSN_ENV)
    match = _URL.match(value or "")
    if value is None or match is None:
        return TaskBackend(value, **options)  # key=value, or the usual "no database" error
    scheme, rest = match.group(1).lower(), match.group(2)
    postgres = _POSTGRES.match(scheme)
    cls = task_backends.get(postgres.group(1) if postgres else scheme)
    if cls is None:
        raise ConfigurationError(
            f"no task backend is registered for {scheme + '://'!r}; registered: "
            f"{', '.join(sorted(task_backends))} (see pgqueue.register_task_backend)"
        )
    return cls(value if postgres else f"postgresql://{rest}", **options)


#: ``scheme://rest`` (RFC 3986 scheme).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)

#: libpq's schemes, with SQLAlchemy's optional ``+driver``.
_POSTGRES = re.compile(r"^(postgres|postgresql)(\+\w+)?$")

"""Bulk enqueue: the shapes :meth:`TaskBackend.queue_tasks` and ``queue_many`` take and return.

A batch is inserted by one statement (``QUEUE_TASKS``) from one JSON document, one object per
task (see :mod:`pgqueue._enqueue`), so 10,000 tasks cost one round trip. lock_ids are honoured
per task: a task whose job cannot overlap is skipped when a live task, or an earlier task of
the same batch, holds its lock_id, and :class:`QueuedTasks` says which ones were skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ._errors import ConfigurationError


@dataclass(frozen=True)
class Call:
    """One task of a mixed batch for :meth:`TaskBackend.queue_many`.

    The fields mean what the arguments of :meth:`TaskBackend.queue_task` of the same names
    mean; None takes the job's default. ``Call("resize", {"path": "a.png"}, priority=5)``.
    ``depends_on`` lists ids of existing tasks that must end SUCCESS before this one runs
    (see :meth:`TaskBackend.queue_task`).
    """

    jobname: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    meta_params: dict[str, Any] | None = None
    expiry: float | timedelta | datetime | None = None
    run_at: datetime | None = None
    countdown: float | timedelta | str | None = None
    queue: str | None = None
    priority: int | None = None
    depends_on: Sequence[str] | None = None


@dataclass(frozen=True)
class QueuedTasks:
    """What a bulk enqueue did: ``ids[i]`` is the id of the i-th task given, or None when it
    was skipped because its lock_id was held (a live task with the same job and kwargs, or
    an earlier task of the same batch). ``then`` is the id of the callback queued with the
    batch (``queue_tasks(..., then=...)``, ``group(..., then=...)``), else None; it is not
    in ``ids``."""

    ids: list[str | None]
    then: str | None = None

    @property
    def queued(self) -> list[str]:
        """The ids of the tasks inserted, in input order."""
        return [task_id for task_id in self.ids if task_id is not None]

    @property
    def skipped(self) -> list[int]:
        """Input positions (0-based) of the tasks skipped as duplicates."""
        return [n for n, task_id in enumerate(self.ids) if task_id is None]

    def __repr__(self) -> str:
        return f"<QueuedTasks queued={len(self.queued)} skipped={len(self.skipped)}>"


def as_call(item: Call | tuple[str, Mapping[str, Any]]) -> Call:
    """``item`` as a :class:`Call`; a ``(jobname, kwargs)`` pair is accepted too.

    Raises :class:`ConfigurationError` for anything else.
    """
    if isinstance(item, Call):
        return item
    if isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str):
        return Call(item[0], item[1])
    raise ConfigurationError(
        f"each task must be a Call or a (jobname, kwargs) pair, not {item!r:.80}; "
        "nothing was queued"
    )

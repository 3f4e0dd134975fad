"""The :class:`Task` record: one row of the task table, as Python sees it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from . import states

#: Columns read back for a Task, in table order. Every query that returns tasks selects these.
TASK_COLUMNS = (
    "id",
    "name",
    "queue",
    "lock_id",
    "status",
    "priority",
    "kwargs",
    "meta_params",
    "result",
    "error",
    "traceback",
    "time_queued",
    "run_at",
    "time_started",
    "time_ended",
    "expiry",
    "worker",
    "attempts",
    "max_retries",
)


@dataclass(frozen=True)
class Task:
    """A task as stored in the database (pulsar's ``Task`` model, with JSON instead of pickle).

    Attributes (all timestamps are aware ``datetime`` in UTC, set by the database clock):

    * ``id`` (str): UUID of the task.
    * ``name`` (str): the job name.
    * ``queue`` (str): the queue (pulsar's backend name; default ``"tasks"``).
    * ``lock_id`` (str | None): set for non-overlapping jobs; at most one live task holds it.
    * ``status`` (int): one of :mod:`pgqueue.states`.
    * ``priority`` (int): higher is claimed first.
    * ``kwargs`` (dict): the job's keyword arguments (JSON).
    * ``meta_params`` (dict): what the caller passed as ``meta_params`` (JSON).
    * ``result``: the job's return value (JSON), when it succeeded.
    * ``error`` / ``traceback`` (str | None): why it failed, was revoked or retried.
    * ``time_queued``, ``run_at``, ``time_started``, ``time_ended``, ``expiry``: timestamps;
      ``run_at`` is the earliest time a worker may claim the task.
    * ``worker`` (str | None): identity of the worker that claimed it last.
    * ``attempts`` (int): how many times it has been claimed; ``max_retries`` (int).
    """

    id: str
    name: str
    queue: str
    lock_id: str | None
    status: int
    priority: int = 0
    kwargs: dict[str, Any] = field(default_factory=dict)
    meta_params: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    time_queued: datetime | None = None
    run_at: datetime | None = None
    time_started: datetime | None = None
    time_ended: datetime | None = None
    expiry: datetime | None = None
    worker: str | None = None
    attempts: int = 0
    max_retries: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        """Build a Task from a row dict holding :data:`TASK_COLUMNS` (extra keys ignored)."""
        values = {name: row[name] for name in TASK_COLUMNS if name in row}
        values["id"] = str(values["id"])
        values["kwargs"] = values.get("kwargs") or {}
        values["meta_params"] = values.get("meta_params") or {}
        return cls(**values)

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> Task:
        """Build a Task from the values of :data:`TASK_COLUMNS` in that order, ``id`` as text
        (what a claim returns); quicker than :meth:`from_row` for the worker's hot path."""
        if type(values[6]) is not dict or type(values[7]) is not dict:  # odd rows from SQL
            return cls.from_row(dict(zip(TASK_COLUMNS, values, strict=True)))
        # The frozen dataclass's __init__ sets 19 fields one object.__setattr__ at a time;
        # filling __dict__ at once costs a third (the values are a database row, checked).
        task = object.__new__(cls)
        task.__dict__.update(zip(TASK_COLUMNS, values, strict=True))
        return task

    def done(self) -> bool:
        """True when the status is one of :data:`pgqueue.states.READY_STATES`."""
        return self.status in states.READY_STATES

    def status_string(self) -> str:
        """The status name, e.g. ``"SUCCESS"``."""
        return states.status_string(self.status)

    def info(self) -> str:
        """A short label: ``task.<name>(<id>)``, as pulsar logs it."""
        return f"task.{self.name}({self.id})"

    def as_dict(self) -> dict[str, Any]:
        """The task as a JSON-friendly dict (timestamps in ISO 8601, plus ``status_string``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        out["status_string"] = self.status_string()
        return out


def task_row(cursor: object) -> Callable[[Sequence[Any]], Task]:
    """A psycopg row factory making a :class:`Task` of each row (see :meth:`Task.from_values`)."""
    return Task.from_values


def nice_task_message(task: Task) -> str:
    """One log line for a task: ``"<name> (<id8>) <STATUS> at <time> by <worker>"``.

    The time shown is the most recent of ended, started and queued (pulsar's
    ``nice_task_message``, which showed the start time).
    """
    when = task.time_ended or task.time_started or task.time_queued
    stamp = when.isoformat(timespec="milliseconds") if when else "?"
    msg = f"{task.name} ({task.id[:8]}) {task.status_string()} at {stamp}"
    return f"{msg} by {task.worker}" if task.worker else msg


def task_log_fields(task: Task) -> dict[str, Any]:
    """The fields of a task's log records (``extra=``; the JSON log format shows them):
    ``task_id``, ``job``, ``queue``, ``attempt``, ``worker``, and ``duration`` (seconds from
    start to end on the database clock) once the task has ended."""
    fields_ = {
        "task_id": task.id,
        "job": task.name,
        "queue": task.queue,
        "attempt": task.attempts,
        "worker": task.worker,
    }
    if task.time_started is not None and task.time_ended is not None:
        fields_["duration"] = (task.time_ended - task.time_started).total_seconds()
    return fields_

"""The :class:`Task` record: one row of the task table, as Python sees it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
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


def format_time(value: datetime | float | str | None) -> str:
    """The default ``smart_time`` of :func:`nice_task_message` (pulsar's ``format_time``):
    ISO 8601 to the millisecond; a float is a POSIX timestamp, a str is shown as it is (as
    :meth:`Task.as_dict` gives times); None is ``"?"``."""
    if value is None:
        return "?"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.isoformat(timespec="milliseconds")


def nice_task_message(
    req: Task | Mapping[str, Any],
    smart_time: Callable[[Any], str] | None = None,
) -> str:
    """One log line for a task, in the shape of pulsar's ``nice_task_message(req,
    smart_time=None)``: ``"<name> (<id8>) <STATUS> at <time> on <worker> by <user>"``.

    :param req: a :class:`Task`, or a mapping with pulsar's keys (``name``, ``id``,
        ``status`` as an int code, ``user``, ``time_start`` / ``time_executed``) or those of
        :meth:`Task.as_dict`.
    :param smart_time: turns the time shown into text; default :func:`format_time`.

    The time is the most recent of ended, started and queued (pulsar showed the start time).
    ``on <worker>`` appears when the task has a worker; ``by <user>`` when the task's
    ``meta_params`` (or a mapping's ``user`` key) name a ``user``, as pulsar's did.
    """
    show = smart_time or format_time
    if isinstance(req, Task):
        when: Any = req.time_ended or req.time_started or req.time_queued
        status, worker, user = req.status_string(), req.worker, req.meta_params.get("user")
        name, task_id = req.name, req.id
    else:
        when = next(
            (req[k] for k in _MAPPING_TIMES if req.get(k) is not None),
            None,
        )
        code = req.get("status")
        status = states.status_string(code) if isinstance(code, int) else str(code)
        worker = req.get("worker")
        user = req.get("user") or (req.get("meta_params") or {}).get("user")
        name, task_id = req["name"], str(req["id"])
    msg = f"{name} ({task_id[:8]}) {status} at {show(when)}"
    if worker:
        msg += f" on {worker}"
    return f"{msg} by {user}" if user else msg


#: Where a mapping given to :func:`nice_task_message` keeps its time, most telling first.
_MAPPING_TIMES = ("time_ended", "time_started", "time_start", "time_executed", "time_queued")


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

"""What operators do, shared by the command line and the dashboard: read the operator views,
revoke, retry and prune tasks.

Every read goes through a view of revision ``pgqueue_0004_operations``; rows come back as
dicts of plain values (``datetime``, ``timedelta``, ``float``, JSON data) that
:func:`jsonable` turns into JSON.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import psycopg

from . import states
from ._store import Op, Store
from ._values import check_text
from ._values import parse_duration as parse_duration  # where the command line finds it
from ._values import require_task_id as require_task_id
from .backend import TaskBackend
from .errors import ConfigurationError, PgQueueError, TaskNotFound

Row = dict[str, Any]

R = TypeVar("R")

#: What ``revoke`` records as the error of a task an operator revoked.
REVOKED_BY_OPERATOR = "revoked by an operator"

#: NOTIFY queue usage (0..1) at which the task triggers stop notifying and workers rely on
#: polling (``notify_task`` of revision pgqueue_0005_contract; F27).
NOTIFY_QUEUE_SKIP = 0.5

#: NOTIFY queue usage from which operators are warned: it is near 0 unless a listening session
#: stopped reading its notifications.
NOTIFY_QUEUE_HIGH = 0.1

#: How many characters of a task's long values ``pgqueue show`` and the dashboard show.
PREVIEW_CHARS = 10_000


class ActionRefused(PgQueueError):
    """An operator action (revoke, retry) does not apply to the task in its current state;
    nothing was changed. The message says why and what the task's state is."""


def parse_states(names: Sequence[str], allowed: frozenset[int] | None = None) -> list[int]:
    """State names (any case) -> codes; raises :class:`ConfigurationError` for an unknown
    name or, when ``allowed`` is given, a state outside it."""
    codes = []
    for name in names:
        try:
            code = states.status_code(name)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if allowed is not None and code not in allowed:
            choices = ", ".join(states.NAMES[c] for c in sorted(allowed, reverse=True))
            raise ConfigurationError(f"state {name.upper()} is not allowed here; use {choices}")
        codes.append(code)
    return codes


def jsonable(value: Any) -> Any:
    """Turn a row value into JSON data: datetimes to ISO 8601, timedeltas to seconds."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@dataclass(frozen=True)
class Overview:
    """One screen of the queue: what ``pgqueue status`` prints and the dashboard's home page.

    ``queues``: rows of ``queue_stats``; ``throughput``: rows of ``queue_throughput``;
    ``workers``: counts by state (alive, stopped, lost); ``stuck``: rows of ``stuck_tasks``;
    ``notify_queue_usage``: how full PostgreSQL's NOTIFY queue is (0..1).
    """

    queues: list[Row]
    throughput: list[Row]
    workers: dict[str, int]
    stuck: list[Row]
    notify_queue_usage: float = 0.0

    @property
    def notify_queue_warning(self) -> str | None:
        """What to tell operators when the NOTIFY queue fills (None while it is nearly empty)."""
        if self.notify_queue_usage < NOTIFY_QUEUE_HIGH:
            return None
        now = (
            "pgqueue stops notifying, workers find tasks by polling"
            if self.notify_queue_usage >= NOTIFY_QUEUE_SKIP
            else f"at {NOTIFY_QUEUE_SKIP:.0%} pgqueue stops notifying and workers rely on polling"
        )
        return (
            f"the NOTIFY queue is {self.notify_queue_usage:.1%} full: a listening session is "
            f"not reading its notifications (idle in a transaction?); {now}"
        )

    def as_json(self) -> dict[str, Any]:
        """The overview as JSON data."""
        return {
            "queues": jsonable(self.queues),
            "throughput": jsonable(self.throughput),
            "workers": self.workers,
            "stuck": jsonable(self.stuck),
            "notify_queue_usage": self.notify_queue_usage,
        }


class Operations:
    """Operator actions and reads on the database of ``backend`` (its pool, its schema).

    Errors: :class:`ConfigurationError` for malformed arguments, :class:`TaskNotFound` for an
    unknown id, :class:`ActionRefused` when an action does not apply to a task's state, and
    the backend's :class:`ConnectionFailed`/:class:`SchemaError`.
    """

    def __init__(self, backend: TaskBackend) -> None:
        self.backend = backend
        self.store = Store(backend.schema)

    def _run(self, op: Op[R]) -> R:
        with self.backend.connection() as conn:
            return op.run(conn)

    # -- reads -----------------------------------------------------------------------------

    def overview(self) -> Overview:
        """Counts by queue and job, throughput, workers by state and stuck tasks."""
        workers = self.workers(recent=3600.0)
        counts = {"alive": 0, "stopped": 0, "lost": 0}
        for worker in workers:
            counts[worker["state"]] = counts.get(worker["state"], 0) + 1
        return Overview(
            queues=self._run(self.store.queue_stats()),
            throughput=self._run(self.store.queue_throughput()),
            workers=counts,
            stuck=self._run(self.store.stuck_tasks()),
            notify_queue_usage=self._run(self.store.notify_queue_usage()),
        )

    def timeline(self) -> list[Row]:
        """Rows of ``queue_timeline``: per queue and minute of the last hour."""
        return self._run(self.store.queue_timeline())

    def list_tasks(
        self,
        *,
        states_: Sequence[str] = (),
        jobs: Sequence[str] = (),
        queues: Sequence[str] = (),
        since: float | None = None,
        limit: int = 50,
    ) -> list[Row]:
        """Tasks matching every filter given (empty filters match all), latest change first.

        :param states_: state names; :param since: seconds before now of the last change.
        :param limit: the most rows returned (1..10000).
        :raises ConfigurationError: an unknown state, a job or queue holding a NUL character,
            or a limit out of range.
        """
        codes = parse_states(states_)
        for value in (*jobs, *queues):
            check_text(value, "a job or queue filter")
        if not 1 <= limit <= 10000:
            raise ConfigurationError(f"limit must be between 1 and 10000, not {limit}")
        return self._run(
            self.store.list_tasks(
                states=[states.NAMES[c] for c in codes] or None,
                jobs=list(jobs) or None,
                queues=list(queues) or None,
                since=since,
                limit=limit,
            )
        )

    def task(self, task_id: str, preview: int | None = PREVIEW_CHARS) -> Row:
        """Every column of one task (``task_state``), traceback included, and its workflow:
        ``parents`` (id, name, state, run_after_failure; ``depends_on`` order) and
        ``children`` (id, name, status, state, waiting_on).

        :param preview: the most characters shown of kwargs, meta_params, result (as JSON
            text), error and traceback; a longer value becomes its first ``preview`` characters
            and its full length (a JSON value then comes back as a string). None: everything.
        """
        valid = require_task_id(task_id)
        row = self._run(self.store.task_detail(id=valid, preview=preview))
        if row is None:
            raise TaskNotFound(f"no task has id {task_id} (it never existed, or was pruned)")
        row["parents"] = [
            {key: parent[key] for key in ("id", "name", "state", "run_after_failure")}
            for parent in self._run(self.store.task_parents(id=valid))
        ]
        row["children"] = self._run(self.store.task_children(id=valid))
        return row

    def workers(self, recent: float | None = 3600.0) -> list[Row]:
        """Rows of ``worker_status``: live workers and those seen in the last ``recent``
        seconds (None: every worker ever registered)."""
        return self._run(self.store.workers(recent=recent))

    def queue_names(self) -> list[str]:
        """Names of the queues that have live tasks or running workers, sorted."""
        names: list[str] = self._run(self.store.queue_names())
        return sorted(names)

    def schedules(self) -> list[Row]:
        """The stored schedules of periodic jobs, by name: :meth:`TaskBackend.schedules`
        (the ``schedule_state`` view, ``due_in`` in seconds)."""
        return self.backend.schedules()

    # -- actions ---------------------------------------------------------------------------

    def revoke(self, task_id: str) -> Row:
        """Revoke a task (:meth:`TaskBackend.revoke`): a QUEUED or RETRY task becomes REVOKED
        and never runs; a STARTED one is asked to stop (``revoke_requested_at``) and ends
        REVOKED when its job returns. Returns the task after the change.

        :raises ActionRefused: the task has already finished.
        """
        task_id = require_task_id(task_id)
        if not self.backend.revoke(task_id, REVOKED_BY_OPERATOR):
            task = self.task(task_id)
            raise ActionRefused(f"task {task_id} has already finished ({task['state']})")
        return self.task(task_id)

    def retry(self, task_id: str) -> Row:
        """Queue a FAILURE or REVOKED task again: it becomes QUEUED, due now. Returns it.

        :raises ActionRefused: the task is not FAILURE/REVOKED, or it cannot overlap and
            another live task with the same job and arguments holds its lock_id.
        """
        task_id = require_task_id(task_id)
        try:
            with self.backend.connection() as conn:
                done = self.store.retry_task(id=task_id).run(conn)
        except psycopg.errors.UniqueViolation:
            holder = self._run(self.store.lock_holder(id=task_id))
            who = f"task {holder['id']} ({holder['state']})" if holder else "another task"
            raise ActionRefused(
                f"task {task_id} cannot run again: its job cannot overlap and {who} with the "
                "same job and arguments is live; wait for it to finish or revoke it"
            ) from None
        task = self.task(task_id)
        if not done:
            raise ActionRefused(
                f"task {task_id} is {task['state']}: only FAILURE and REVOKED tasks can be retried"
            )
        return task

    def count_prunable(self, older_than: float, states_: Sequence[int]) -> int:
        """How many finished tasks in ``states_`` ended more than ``older_than`` s ago."""
        return self._run(self.store.count_prunable(older_than=older_than, states=list(states_)))

    def prune_batch(self, older_than: float, states_: Sequence[int], limit: int) -> int:
        """Delete at most ``limit`` such tasks (one short transaction); return how many."""
        return self._run(
            self.store.prune_tasks(older_than=older_than, states=list(states_), limit=limit)
        )

"""What operators do, shared by the command line and the dashboard: read the operator views,
revoke, retry and prune tasks.

Every read goes through a view of revision ``pgqueue_0004_operations``; rows come back as
dicts of plain values (``datetime``, ``timedelta``, ``float``, JSON data) that
:func:`jsonable` turns into JSON.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import psycopg

from . import _replica, states
from ._backend import TaskBackend
from ._errors import (
    ConfigurationError,
    PgQueueError,
    TaskNotFound,
    UnknownQueue,
    UnknownSchedule,
)
from ._store import Op, Store
from ._store.operator import TASK_ORDERS
from ._store.schedules import triggered_params
from ._values import check_queue, check_text, parse_task_id
from ._values import parse_duration as parse_duration  # where the command line finds it
from ._values import require_task_id as require_task_id

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


#: The shortest id prefix accepted (log lines show the first 8 characters of an id).
MIN_PREFIX = 4

#: How many tasks an ambiguous prefix is counted up to.
PREFIX_CANDIDATES = 1000

#: A task id or the start of one: hex digits, dashes where a UUID has them (or none).
ID_PREFIX = re.compile(r"[0-9a-fA-F-]{1,36}")


#: The time ranges the dashboard's charts offer, in seconds.
SPANS = {"hour": 3600.0, "day": 86400.0, "week": 604800.0}

#: The most tasks one bulk action changes.
BULK_LIMIT = 10_000

#: Where the task list stops counting: it says "10,000+" beyond.
COUNT_CAP = 10_001


def _json_object(text: str) -> str:
    """``text`` when it is a JSON object (the kwargs filter), else :class:`ConfigurationError`."""
    check_text(text, "the arguments filter")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"the arguments filter is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigurationError('the arguments filter must be a JSON object, like {"user": 7}')
    return text


class AmbiguousTaskId(ConfigurationError):
    """An id prefix that more than one task's id starts with; the message says how many."""


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

    ``queues``: rows of ``queue_overview`` (live tasks counted as ``queue_stats`` does,
    finished ones of the last hour); ``throughput``: ``queue_throughput``'s rows for the last
    minute and the last five minutes;
    ``workers``: counts by state (alive, stopped, lost); ``stuck``: rows of ``stuck_tasks``;
    ``notify_queue_usage``: how full PostgreSQL's NOTIFY queue is (0..1); ``flow``: rows of
    ``queue_flow`` (paused or not, limits, live counts per queue); ``limits``: rows of
    ``flow_limits`` (limited jobs and keys, most waiting first).
    """

    queues: list[Row]
    throughput: list[Row]
    workers: dict[str, int]
    stuck: list[Row]
    notify_queue_usage: float = 0.0
    flow: list[Row] = field(default_factory=list)
    limits: list[Row] = field(default_factory=list)

    @property
    def settings(self) -> list[Row]:
        """The queues that are paused or limited."""
        return [
            row
            for row in self.flow
            if row["paused"] or row["concurrency"] is not None or row["rate_count"] is not None
        ]

    @property
    def paused(self) -> list[str]:
        """The paused queues, by name."""
        return [row["queue"] for row in self.flow if row["paused"]]

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
            "flow": jsonable(self.flow),
            "limits": jsonable(self.limits),
        }


def default_actor() -> str:
    """Who an action is recorded as when no one is named: ``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container, say)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class Operations:
    """Operator actions and reads on the database of ``backend`` (its pool, its schema).

    With ``reader`` (a backend on a streaming standby: ``--read-dsn``) the reads of views and
    tasks go there and :meth:`staleness` says how old they are; actions, and the reads that
    show their result, stay on ``backend`` (the primary).

    Errors: :class:`ConfigurationError` for malformed arguments, :class:`TaskNotFound` for an
    unknown id, :class:`ActionRefused` when an action does not apply to a task's state, and
    the backend's :class:`ConnectionFailed`/:class:`SchemaError`.
    """

    def __init__(self, backend: TaskBackend, reader: TaskBackend | None = None) -> None:
        self.backend = backend
        self.reader = reader or backend
        self.store = Store(backend.schema)

    def _run(self, op: Op[R]) -> R:
        with self.backend.connection() as conn:
            return op.run(conn)

    def _read(self, op: Op[R]) -> R:
        with self.reader.connection() as conn:
            return op.run(conn)

    def staleness(self) -> str | None:
        """None when reads come from a primary; else how far behind the standby they come
        from is (``now() - pg_last_xact_replay_timestamp()``, :mod:`pgqueue._replica`)."""
        with self.reader.connection() as conn:
            return _replica.staleness(conn, self.store)

    def resolve_id(self, task_id: str) -> str:
        """The full id of the task ``task_id`` names: a whole id, or a unique prefix of one
        (at least :data:`MIN_PREFIX` hex digits, dashes optional), as the 8-character ids in
        log lines and ``pgqueue list``. Found by a range scan of the primary key.

        :raises InvalidTaskId: neither an id nor a prefix of one.
        :raises TaskNotFound: no task's id starts with the prefix.
        :raises AmbiguousTaskId: several do; the message counts them (up to 1000).
        """
        whole = parse_task_id(task_id)
        if whole is not None:
            return whole
        text = task_id.strip().lower() if isinstance(task_id, str) else ""
        digits = text.replace("-", "")
        if not ID_PREFIX.fullmatch(text) or not MIN_PREFIX <= len(digits) <= 32:
            return require_task_id(task_id)  # raises InvalidTaskId

        def uuid_of(fill: str) -> str:
            return str(uuid.UUID(digits + fill * (32 - len(digits))))

        found = self._run(
            self.store.tasks_by_prefix(
                low=uuid_of("0"), high=uuid_of("f"), limit=PREFIX_CANDIDATES + 1
            )
        )
        if not found:
            raise TaskNotFound(f"no task id starts with {text} (it never existed, or was pruned)")
        if len(found) > 1:
            many = (
                f"more than {PREFIX_CANDIDATES:,}"
                if len(found) > PREFIX_CANDIDATES
                else f"{len(found)}"
            )
            raise AmbiguousTaskId(
                f"{many} tasks have ids starting with {text} (first {found[0]}, "
                f"{found[1]}); give more characters of the id"
            )
        return str(found[0])

    # -- reads -----------------------------------------------------------------------------

    def overview(self) -> Overview:
        """Counts by queue and job, throughput, workers by state and stuck tasks."""
        workers = self.workers(recent=3600.0)
        counts = {"alive": 0, "stopped": 0, "lost": 0}
        for worker in workers:
            counts[worker["state"]] = counts.get(worker["state"], 0) + 1
        return Overview(
            queues=self._read(self.store.queue_overview()),
            throughput=self._read(self.store.queue_throughput_recent()),
            workers=counts,
            stuck=self._read(self.store.stuck_tasks()),
            notify_queue_usage=self._run(self.store.notify_queue_usage()),  # the primary's
            flow=self._run(self.store.queue_flow()),
            limits=self._run(self.store.flow_limits(limit=20)),
        )

    def timeline(self) -> list[Row]:
        """Rows of ``queue_timeline``: per queue and minute of the last hour."""
        return self._read(self.store.queue_timeline())

    def activity(self, span: str) -> list[Row]:
        """Finished and failed tasks per queue over the last ``span`` (a key of
        :data:`SPANS`: hour, day or week) in 60 periods, oldest first; ``minute`` is each
        period's start. Raises :class:`ConfigurationError` for another span."""
        if span not in SPANS:
            raise ConfigurationError(f"range must be one of {', '.join(SPANS)}, not {span}")
        return self._run(self.store.queue_activity(step=SPANS[span] / 60, buckets=60))

    def list_tasks(
        self,
        *,
        states_: Sequence[str] = (),
        jobs: Sequence[str] = (),
        queues: Sequence[str] = (),
        since: float | None = None,
        limit: int = 50,
        offset: int = 0,
        args: str | None = None,
        order: str = "changed",
    ) -> list[Row]:
        """Tasks matching every filter given (empty filters match all): ``limit`` of them
        from ``offset``, latest change first unless ``order`` says otherwise.

        :param states_: state names; :param since: seconds before now of the last change.
        :param limit: the most rows returned (1..10000).
        :param args: a JSON object the tasks' kwargs must contain (PostgreSQL's ``@>``):
            ``{"user": 7}`` finds every task called with ``user=7``, whatever else it got.
        :param order: ``changed`` (latest change first), ``changed_asc``, ``queued`` (latest
            queued first) or ``queued_asc``.
        :raises ConfigurationError: an unknown state or order, a job or queue holding a NUL
            character, ``args`` that is not a JSON object, or a limit or offset out of range.
        """
        if not 1 <= limit <= 10000:
            raise ConfigurationError(f"limit must be between 1 and 10000, not {limit}")
        if offset < 0:
            raise ConfigurationError(f"offset must be 0 or more, not {offset}")
        if order not in TASK_ORDERS:
            raise ConfigurationError(f"order must be one of {', '.join(TASK_ORDERS)}, not {order}")
        return self._read(
            self.store.list_tasks(
                **self._filters(states_, jobs, queues, since, args),
                limit=limit,
                offset=offset,
                order=order,
            )
        )

    def count_tasks(
        self,
        *,
        states_: Sequence[str] = (),
        jobs: Sequence[str] = (),
        queues: Sequence[str] = (),
        since: float | None = None,
        args: str | None = None,
        cap: int = COUNT_CAP,
    ) -> int:
        """How many tasks match the filters of :meth:`list_tasks`, counted up to ``cap`` (a
        bounded count: a result of ``cap`` means "at least that many"). Raises as
        :meth:`list_tasks`."""
        return self._read(
            self.store.count_tasks(**self._filters(states_, jobs, queues, since, args), cap=cap)
        )

    @staticmethod
    def _filters(
        states_: Sequence[str],
        jobs: Sequence[str],
        queues: Sequence[str],
        since: float | None,
        args: str | None,
    ) -> dict[str, Any]:
        """The store's filter parameters, checked (see :meth:`list_tasks`)."""
        codes = parse_states(states_)
        for value in (*jobs, *queues):
            check_text(value, "a job or queue filter")
        return {
            "states": [states.NAMES[c] for c in codes] or None,
            "jobs": list(jobs) or None,
            "queues": list(queues) or None,
            "since": since,
            "args": _json_object(args) if args else None,
        }

    def task(
        self, task_id: str, preview: int | None = PREVIEW_CHARS, *, fresh: bool = False
    ) -> Row:
        """Every column of one task (``task_state``), traceback included, and its workflow:
        ``parents`` (id, name, queue, state, run_after_failure; ``depends_on`` order) and
        ``children`` (id, name, queue, status, state, waiting_on).

        :param preview: the most characters shown of kwargs, meta_params, result (as JSON
            text), error and traceback; a longer value becomes its first ``preview`` characters
            and its full length (a JSON value then comes back as a string). None: everything.
        :param fresh: read from the primary even with a ``reader`` (after an action).
        """
        valid = self.resolve_id(task_id)
        read = self._run if fresh else self._read
        row = read(self.store.task_detail(id=valid, preview=preview))
        if row is None:
            raise TaskNotFound(f"no task has id {task_id} (it never existed, or was pruned)")
        row["parents"] = [
            {key: parent[key] for key in ("id", "name", "queue", "state", "run_after_failure")}
            for parent in read(self.store.task_parents(id=valid))
        ]
        row["children"] = read(self.store.task_children(id=valid))
        return row

    def workers(self, recent: float | None = 3600.0) -> list[Row]:
        """Rows of ``worker_status``: live workers and those seen in the last ``recent``
        seconds (None: every worker ever registered)."""
        return self._read(self.store.workers(recent=recent))

    def queue_names(self) -> list[str]:
        """Names of the queues that have live tasks or running workers, sorted."""
        names: list[str] = self._read(self.store.queue_names())
        return sorted(names)

    def schedules(self) -> list[Row]:
        """The stored schedules of periodic jobs, by name: :meth:`TaskBackend.schedules`
        (the ``schedule_state`` view, ``due_in`` in seconds)."""
        return self.reader.schedules()

    # -- actions ---------------------------------------------------------------------------

    def revoke(self, task_id: str, *, actor: str | None = None) -> Row:
        """Revoke a task (:meth:`TaskBackend.revoke`): a QUEUED or RETRY task becomes REVOKED
        and never runs; a STARTED one is asked to stop (``revoke_requested_at``) and ends
        REVOKED if its job stops (SUCCESS if it returns normally all the same). Returns the
        task after the change, with ``revoke``: the :class:`pgqueue.states.RevokeResult`'s
        value (``revoked`` or ``stop_requested``), which says what the call did even when the
        task has moved on since. ``task_id`` may be a unique prefix (:meth:`resolve_id`); the
        audit trail names ``actor`` (default: this process's user and host).

        :raises ActionRefused: the task has already finished.
        """
        task_id = self.resolve_id(task_id)
        result = self.backend.revoke(task_id, REVOKED_BY_OPERATOR)
        if not result:
            task = self.task(task_id, fresh=True)
            raise ActionRefused(f"task {task_id} has already finished ({task['state']})")
        self._run(self._audit(actor, "revoke", task_id))
        return {**self.task(task_id, fresh=True), "revoke": result.value}

    def retry(self, task_id: str, *, actor: str | None = None) -> Row:
        """Queue a FAILURE or REVOKED task again: it becomes QUEUED, due now. Returns it. Its
        last attempt's error and traceback are kept in its attempt history
        (:meth:`attempts`). ``task_id`` and ``actor`` as :meth:`revoke`.

        :raises ActionRefused: the task is not FAILURE/REVOKED, or it cannot overlap and
            another live task with the same job and arguments holds its lock_id.
        """
        task_id = self.resolve_id(task_id)
        return self._requeue(task_id, self.store.retry_task(id=task_id), "retry", actor, {})

    def grant_attempts(self, task_id: str, more: int, *, actor: str | None = None) -> Row:
        """Queue a FAILURE or REVOKED task again with ``more`` attempts (1..100): a failure
        of the next ``more - 1`` runs is retried with the job's backoff, as ``max_retries``
        would (``max_retries`` is raised to ``attempts + more - 1``). Raises as :meth:`retry`,
        and :class:`ConfigurationError` for ``more`` out of range."""
        if not 1 <= more <= 100:
            raise ConfigurationError(f"attempts to grant must be between 1 and 100, not {more}")
        task_id = self.resolve_id(task_id)
        op = self.store.grant_attempts(id=task_id, more=more)
        return self._requeue(task_id, op, "grant attempts", actor, {"more": more})

    def run_now(self, task_id: str, *, actor: str | None = None) -> Row:
        """Make a QUEUED or RETRY task that waits for a later ``run_at`` due now.

        :raises ActionRefused: the task is not waiting (running, finished or already due).
        """
        task_id = self.resolve_id(task_id)
        with self.backend.connection() as conn, conn.transaction():
            done = self.store.run_now(id=task_id).run(conn)
            if done:
                self._audit(actor, "run now", task_id).run(conn)
        task = self.task(task_id)
        if not done:
            raise ActionRefused(f"task {task_id} is {task['state']} and not waiting to be due")
        return task

    def retry_failed(
        self,
        *,
        jobs: Sequence[str] = (),
        queues: Sequence[str] = (),
        limit: int = BULK_LIMIT,
        actor: str | None = None,
    ) -> list[str]:
        """Queue again every FAILURE task of ``jobs`` in ``queues`` (empty: any), at most
        ``limit`` (1..10000) in one go; returns their ids. A task whose job cannot overlap is
        left FAILURE while a live task holds its lock_id (and only one of several failed
        tasks sharing one is queued). Recorded in the audit trail as one action.

        :raises ConfigurationError: a limit out of range, or a job or queue holding NUL.
        """
        if not 1 <= limit <= BULK_LIMIT:
            raise ConfigurationError(f"limit must be between 1 and {BULK_LIMIT}, not {limit}")
        for value in (*jobs, *queues):
            check_text(value, "a job or queue filter")
        with self.backend.connection() as conn, conn.transaction():
            ids = self.store.retry_failed(
                jobs=list(jobs) or None, queues=list(queues) or None, limit=limit
            ).run(conn)
            detail = {"count": len(ids), "jobs": list(jobs), "queues": list(queues)}
            self._audit(actor, "retry failed tasks", None, **detail).run(conn)
        return ids

    def revoke_many(self, task_ids: Sequence[str], *, actor: str | None = None) -> list[str]:
        """Revoke each task of ``task_ids`` (whole ids, at most 10000) as :meth:`revoke` does,
        in one transaction; returns the ids that were QUEUED, RETRY or STARTED (finished ones
        are left as they are). Recorded in the audit trail as one action.

        :raises InvalidTaskId: an id that is not a UUID; :raises ConfigurationError: too many.
        """
        if len(task_ids) > BULK_LIMIT:
            raise ConfigurationError(f"at most {BULK_LIMIT} tasks at a time, not {len(task_ids)}")
        valid = [require_task_id(task_id) for task_id in task_ids]
        revoked = []
        with self.backend.connection() as conn, conn.transaction():
            for task_id in valid:
                row = self.store.revoke_task(id=task_id, reason=REVOKED_BY_OPERATOR).run(conn)
                if row is not None:
                    revoked.append(task_id)
            self._audit(actor, "revoke tasks", None, count=len(revoked), ids=revoked).run(conn)
        return revoked

    def pause_schedule(self, name: str, *, actor: str | None = None) -> Row:
        """Pause the schedule of periodic job ``name`` on every scheduler: its ticks queue
        nothing (they are skipped and counted in ``skipped_count``, not caught up on resume)
        until :meth:`resume_schedule`. Returns ``name`` and ``paused_at`` (the first pause's
        time when it was paused already). Audited as ``pause schedule``.

        :raises UnknownSchedule: no schedule has that name; nothing changed.
        """
        return self._schedule_action(
            name,
            actor,
            "pause schedule",
            lambda: self.store.set_schedule_paused(name=name, paused=True),
        )

    def resume_schedule(self, name: str, *, actor: str | None = None) -> Row:
        """Resume a paused schedule: its next tick queues a task again (``paused_at`` None
        in the returned row). Audited as ``resume schedule``; raises as
        :meth:`pause_schedule`."""
        return self._schedule_action(
            name,
            actor,
            "resume schedule",
            lambda: self.store.set_schedule_paused(name=name, paused=False),
        )

    def trigger_schedule(self, name: str, *, actor: str | None = None) -> Row:
        """Run periodic job ``name`` once now, paused or not: queue one task of the job as a
        tick would, at once and without a scheduler, so any worker consuming its queue runs
        it. The task takes the job's options a scheduler stored with the schedule
        (``task_options``: queue, priority, expiry, retries, limits, and the lock of a job
        that cannot overlap: nothing is queued while its previous task is live), and
        ``meta_params`` naming the operator (``triggered_by``, ``triggered_at``, ``tick``).
        The task, the schedule's counters (``runs_count``, ``last_task``, ``last_outcome``
        ``triggered`` or ``trigger skipped (overlap)``) and the audit line (``trigger
        schedule``) are written in one transaction.

        A schedule stored by a scheduler older than revision ``pgqueue_0013_queue_stats``
        has no ``task_options`` until a scheduler of this version starts: then the run is
        requested instead, and the next scheduler round queues it (``trigger_requested_at``).

        Returns ``name``, ``paused_at``, ``task_id`` (None when nothing was queued),
        ``queue``, ``queued`` (True when a task was queued) and ``trigger_requested_at``
        (None unless the run was only requested).

        :raises UnknownSchedule: no schedule has that name; nothing changed.
        """
        who = actor or default_actor()
        check_text(name, "a schedule name")
        with self.backend.connection() as conn, conn.transaction():
            row = self.store.lock_schedule(name=name).run(conn)
            options = None if row is None else row["task_options"]
            if row is None:
                pass  # raised below, once this connection is back in the pool
            elif options is None:
                requested = self.store.request_trigger(name=name, actor=who).run(conn)
                self._audit(who, "trigger schedule", None, schedule=name, queued=False).run(conn)
                return {**(requested or {}), "task_id": None, "queue": None, "queued": False}
            else:
                moment = row["now"].isoformat()
                meta = {"tick": moment, "triggered_by": who, "triggered_at": moment}
                task_id = self.store.queue_task(triggered_params(options, meta)).run(conn)
                self.store.record_ticks(
                    name=name,
                    queued=0 if task_id is None else 1,
                    skipped=0,
                    last_task=task_id,
                    outcome="triggered" if task_id else "trigger skipped (overlap)",
                ).run(conn)
                detail = {"schedule": name, "queued": task_id is not None}
                self._audit(who, "trigger schedule", task_id, **detail).run(conn)
        if row is None or options is None:
            raise self._unknown_schedule(name)
        return {
            "name": name,
            "paused_at": row["paused_at"],
            "task_id": task_id,
            "queue": options.get("queue"),
            "queued": task_id is not None,
            "trigger_requested_at": None,
        }

    def pause_queue(self, name: str, *, actor: str | None = None) -> Row:
        """Pause queue ``name`` for every worker, as :meth:`TaskBackend.pause_queue` does
        (running tasks finish, queued ones wait), and record it in the audit trail as ``pause
        queue``, in one transaction. Returns ``queue`` and ``paused_at`` (the first pause's
        time when it was paused already).

        :raises UnknownQueue: no task and no worker ever used ``name``; nothing changed.
        :raises ConfigurationError: ``name`` is not a valid queue name.
        """
        queue = check_queue(name)
        since = self._queue_action(queue, actor, "pause queue", self.store.pause_queue(queue=queue))
        return {"queue": queue, "paused_at": since}

    def resume_queue(self, name: str, *, actor: str | None = None) -> Row:
        """Resume queue ``name`` (its workers are woken and claim at once), recorded as
        ``resume queue``. Returns ``queue`` and ``was_paused``; raises as
        :meth:`pause_queue`."""
        queue = check_queue(name)
        was = self._queue_action(queue, actor, "resume queue", self.store.resume_queue(queue=queue))
        return {"queue": queue, "was_paused": was}

    def _queue_action(self, queue: str, actor: str | None, action: str, op: Op[R]) -> R:
        """Run ``op`` on ``queue`` and record it, in one transaction."""
        with self.backend.connection() as conn, conn.transaction():
            try:
                result = op.run(conn)
            except psycopg.errors.NoDataFound:
                raise UnknownQueue(
                    f"unknown queue {queue!r}: no task and no worker ever used it; nothing "
                    "was changed"
                ) from None
            self._audit(actor, action, None, queue=queue).run(conn)
        return result

    def _schedule_action(
        self, name: str, actor: str | None, action: str, op: Callable[[], Op[Row | None]]
    ) -> Row:
        """Run ``op`` on schedule ``name`` and record it, in one transaction."""
        check_text(name, "a schedule name")
        with self.backend.connection() as conn, conn.transaction():
            row = op().run(conn)
            if row is not None:
                self._audit(actor, action, None, schedule=name).run(conn)
        if row is None:
            raise self._unknown_schedule(name)
        return row

    def _unknown_schedule(self, name: str) -> UnknownSchedule:
        """The error for a schedule name that has no row, naming those that have one."""
        known = [s["name"] for s in self.backend.schedules()]
        return UnknownSchedule(
            f"no periodic job named {name!r} has a schedule (known: "
            f"{', '.join(known) or 'none yet; a worker with --schedule-periodic defines them'})"
        )

    def attempts(self, task_id: str) -> list[Row]:
        """The earlier attempts of a task, oldest first: attempt, state, worker, times, error
        and traceback of each (its latest attempt is the task row itself)."""
        return self._run(self.store.task_attempts(id=self.resolve_id(task_id)))

    def actions(self, limit: int = 200) -> list[Row]:
        """The latest ``limit`` lines of the audit trail: at, actor, action, task_id, detail."""
        return self._run(self.store.list_actions(limit=limit))

    def _requeue(
        self, task_id: str, op: Op[bool], action: str, actor: str | None, detail: dict[str, Any]
    ) -> Row:
        """Run ``op`` (a retry of ``task_id``) and record it, in one transaction."""
        try:
            with self.backend.connection() as conn, conn.transaction():
                done = op.run(conn)
                if done:
                    self._audit(actor, action, task_id, **detail).run(conn)
        except psycopg.errors.UniqueViolation:
            holder = self._run(self.store.lock_holder(id=task_id))
            who = f"task {holder['id']} ({holder['state']})" if holder else "another task"
            raise ActionRefused(
                f"task {task_id} cannot run again: its job cannot overlap and {who} with the "
                "same job and arguments is live; wait for it to finish or revoke it"
            ) from None
        task = self.task(task_id, fresh=True)
        if not done:
            raise ActionRefused(
                f"task {task_id} is {task['state']}: only FAILURE and REVOKED tasks can be retried"
            )
        return task

    def _audit(
        self, actor: str | None, action: str, task_id: str | None, **detail: Any
    ) -> Op[None]:
        return self.store.record_action(
            actor=actor or default_actor(),
            action=action,
            task_id=task_id,
            detail=json.dumps(detail),
        )

    def count_prunable(self, older_than: float, states_: Sequence[int]) -> int:
        """How many finished tasks in ``states_`` ended more than ``older_than`` s ago."""
        return self._run(self.store.count_prunable(older_than=older_than, states=list(states_)))

    def prune_batch(self, older_than: float, states_: Sequence[int], limit: int) -> int:
        """Delete at most ``limit`` such tasks (one short transaction); return how many."""
        return self._run(
            self.store.prune_tasks(older_than=older_than, states=list(states_), limit=limit)
        )

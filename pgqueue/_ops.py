"""What operators do, shared by the command line and the dashboard: read the operator views,
revoke, retry and prune tasks.

Every read goes through a view of revision ``pgqueue_0004_operations``; rows come back as
dicts of plain values (``datetime``, ``timedelta``, ``float``, JSON data) that
:func:`jsonable` turns into JSON.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import psycopg

from . import _replica, states
from ._backend import TaskBackend
from ._errors import (
    ConfigurationError,
    TaskNotFound,
)
from ._ops_actions import ActionRefused as ActionRefused  # where the dashboard finds it
from ._ops_actions import OperatorActions
from ._store import Op, Store
from ._store.operator import TASK_ORDERS
from ._values import check_text, parse_task_id
from ._values import parse_duration as parse_duration  # where the command line finds it
from ._values import require_task_id as require_task_id

Row = dict[str, Any]

R = TypeVar("R")

logger = logging.getLogger("pgqueue.ops")

#: What may stop a roll-up of the per-minute summary without making a chart fail.
_ROLL_UP_REFUSED = (
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.QueryCanceled,
    psycopg.errors.SerializationFailure,
)

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


class Operations(OperatorActions):
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

    def activity(self, span: str, *, roll_up: bool = True) -> list[Row]:
        """Finished and failed tasks per queue over the last ``span`` (a key of
        :data:`SPANS`: hour, day or week) in 60 periods, oldest first; ``minute`` is each
        period's start. With ``roll_up`` (not in a read-only dashboard) the per-minute summary
        is brought up to date first (:meth:`roll_up_ended`). Raises
        :class:`ConfigurationError` for another span."""
        if span not in SPANS:
            raise ConfigurationError(f"range must be one of {', '.join(SPANS)}, not {span}")
        if roll_up:
            self.roll_up_ended()
        return self._run(self.store.queue_activity(step=SPANS[span] / 60, buckets=60))

    def roll_up_ended(self) -> int:
        """Sum up the closed minutes of finished tasks into the per-minute summary the charts
        read (revision pgqueue_0016_ended_per_minute); return how many minute rows were
        written. Where the database refuses it (a role that may not write the summary, a
        read-only server, a ``statement_timeout`` shorter than the first roll-up, which sums up
        eight days, or a serialization failure), nothing is written and the charts count the
        tasks the summary lacks from the task table: logged at DEBUG, 0 returned."""
        try:
            return self._run(self.store.roll_up_ended())
        except _ROLL_UP_REFUSED as exc:
            logger.debug("per-minute summary not rolled up: %s", str(exc).splitlines()[0])
            return 0

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

    def attempts(self, task_id: str) -> list[Row]:
        """The earlier attempts of a task, oldest first: attempt, state, worker, times, error
        and traceback of each (its latest attempt is the task row itself)."""
        return self._run(self.store.task_attempts(id=self.resolve_id(task_id)))

    def actions(self, limit: int = 200) -> list[Row]:
        """The latest ``limit`` lines of the audit trail: at, actor, action, task_id, detail."""
        return self._run(self.store.list_actions(limit=limit))

    def count_prunable(self, older_than: float, states_: Sequence[int]) -> int:
        """How many finished tasks in ``states_`` ended more than ``older_than`` s ago."""
        return self._run(self.store.count_prunable(older_than=older_than, states=list(states_)))

    def prune_batch(self, older_than: float, states_: Sequence[int], limit: int) -> int:
        """Delete at most ``limit`` such tasks (one short transaction); return how many."""
        return self._run(
            self.store.prune_tasks(older_than=older_than, states=list(states_), limit=limit)
        )

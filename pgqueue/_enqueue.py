"""Turning enqueue calls into the parameters of the store's ``queue_task`` (one task) and
``queue_tasks`` (a batch): job defaults applied, every value checked, nothing sent before all
of it passed.

A batch travels as one JSON document (``"[{...}, ...]"``) that the statement reads
with ``jsonb_to_recordset``: one parameter whatever the batch size. Tasks of one batch that
share everything but their kwargs (``queue_tasks``) have their job defaults worked out once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from . import _tracing as tracing
from ._bulk import Call
from ._errors import ConfigurationError
from ._jobs import Job, JobRegistry, to_seconds
from ._store.tasks import CommonParams, TaskParams
from ._values import (
    check_priority,
    check_queue,
    dump_json,
    dump_kwargs,
    parse_duration,
    require_task_id,
    time_params,
)

#: Arguments no job can take: every job is called as ``job(consumer, **kwargs)``.
RESERVED_KWARGS = frozenset({"self", "consumer"})


def common_params(
    registry: JobRegistry, default_queue: str, call: Call
) -> tuple[Job, CommonParams]:
    """The job of ``call`` and the parameters of ``QUEUE_TASK`` that do not depend on its
    kwargs (all but ``can_overlap`` and ``kwargs``), the job's defaults applied.

    Raises :class:`TaskNotAvailable` for an unknown job, :class:`SerializationError` for
    ``meta_params`` that are not JSON, :class:`ConfigurationError` for any other bad value
    (see :meth:`TaskBackend.queue_task`).
    """
    job = registry[call.jobname]
    meta_params = call.meta_params
    if meta_params is not None and not isinstance(meta_params, Mapping):
        raise ConfigurationError(f"meta_params must be a dict, not {type(meta_params).__name__}")
    expiry_at, expiry_in = time_params(
        call.expiry if call.expiry is not None else job.expiry_seconds(), "expiry"
    )
    if call.run_at is not None and call.countdown is not None:
        raise ConfigurationError("give run_at or countdown, not both")
    countdown = call.countdown
    if isinstance(countdown, str):  # "90s", "5m": read as the command line reads --countdown
        countdown = _duration(countdown)
    start_at, start_in = time_params(
        call.run_at if call.run_at is not None else countdown,
        "run_at" if call.run_at is not None else "countdown",
    )
    if start_in is not None and start_in < 0:
        raise ConfigurationError(f"countdown must be seconds >= 0, not {call.countdown!r}")
    return job, {
        "name": job.name,
        "queue": check_queue(call.queue if call.queue is not None else job.queue or default_queue),
        "priority": check_priority(job.priority if call.priority is None else call.priority),
        "meta_params": dump_json(
            tracing.with_trace_context(dict(meta_params or {})), "meta_params"
        ),
        "run_at": start_at,
        "countdown": start_in,
        "expiry_at": expiry_at,
        "expiry_in": expiry_in,
        "max_retries": int(job.max_retries),
        "concurrency": job.concurrency,
        "rate_count": job.rate_limit[0] if job.rate_limit else None,
        "rate_seconds": float(job.rate_limit[1]) if job.rate_limit else None,
        "unique_for": to_seconds(job.unique_for, f"{job.name}.unique_for"),
    }


def check_kwargs(job: Job, kwargs: object) -> Mapping[str, Any]:
    """``kwargs`` if it is a dict a job can be called with; else :class:`ConfigurationError`."""
    if type(kwargs) is not dict and not isinstance(kwargs, Mapping):  # the ABC check is slow
        raise ConfigurationError(
            f"the kwargs of each task of job {job.name!r} must be a dict, not "
            f"{type(kwargs).__name__} ({kwargs!r:.60}); nothing was queued"
        )
    if not RESERVED_KWARGS.isdisjoint(kwargs):
        taken = RESERVED_KWARGS.intersection(kwargs)
        raise ConfigurationError(
            f"job {job.name!r} cannot take an argument named {sorted(taken)[0]!r}: every "
            "job is called as job(consumer, **kwargs); nothing was queued"
        )
    return kwargs


def kwargs_params(
    job: Job, kwargs: object, meta_params: Mapping[str, Any] | None = None
) -> tuple[bool, str, str | None]:
    """What ``QUEUE_TASK`` takes of one task's kwargs: ``can_overlap`` for them, their JSON
    text and their ``limit_key`` (:meth:`Job.limit_key_of`). Raises as :func:`check_kwargs`,
    :class:`SerializationError` for kwargs that are not JSON, :class:`JobArgumentError` for
    kwargs that do not fit the job's signature (``meta_params`` only improves that message:
    see :mod:`pgqueue._arguments`), :class:`ConfigurationError` for a bad limit key."""
    checked = dict(check_kwargs(job, kwargs))
    text = dump_kwargs(job.name, checked)
    job.argument_check(checked, meta_params)  # after the JSON checks, before can_overlap
    return job.overlaps(checked), text, job.limit_key_of(checked)


def task_params(
    registry: JobRegistry, default_queue: str, call: Call, kwargs: Mapping[str, Any]
) -> TaskParams:
    """The parameters of ``QUEUE_TASK`` for one task; raises as :func:`common_params` and
    :func:`kwargs_params`."""
    job, common = common_params(registry, default_queue, call)
    params = cast(TaskParams, common)  # completed in place: no copy per task
    params["can_overlap"], params["kwargs"], params["limit_key"] = kwargs_params(
        job, kwargs, call.meta_params
    )
    return params


def check_debounce(debounce: object, params: TaskParams) -> float:
    """``debounce`` in seconds if it can apply to the task of ``params``: a number of seconds
    > 0 (or a timedelta) for a job that cannot overlap (a debounced copy is found by its
    lock_id); else :class:`ConfigurationError`."""
    seconds = to_seconds(debounce, "debounce")  # type: ignore[arg-type]
    if not seconds or seconds == float("inf"):
        raise ConfigurationError(f"debounce must be seconds > 0, not {debounce!r}")
    if params["can_overlap"]:
        raise ConfigurationError(
            f"debounce needs a job that cannot overlap (can_overlap=False or unique_for): "
            f"copies of job {params['name']!r} have no lock_id to be found by; nothing was queued"
        )
    if params["run_at"] is not None or params["countdown"] is not None:
        raise ConfigurationError("give debounce or run_at/countdown, not both")
    return seconds


@dataclass(frozen=True)
class Link:
    """Where one task of a batch stands in a workflow, besides its call's ``depends_on``:
    ``after`` lists the 0-based positions of earlier tasks of the same batch it depends on,
    ``after_all`` makes it depend on every earlier task (a callback), and
    ``run_after_failure`` makes it run whatever its parents ended as (a batch's callback),
    whatever its job says."""

    after: tuple[int, ...] = ()
    after_all: bool = False
    run_after_failure: bool = False


#: A task of a batch: its call (whose own kwargs are ignored), its kwargs, its :class:`Link`
#: (a pair without the link stands for a task without one).
BatchItem = tuple[Call, Mapping[str, Any], Link | None] | tuple[Call, Mapping[str, Any]]


class Batch(NamedTuple):
    """A batch ready for the store: the JSON document of ``QUEUE_TASKS`` (None: no task), and
    whether a task of it depends on another (then it goes through ``QUEUE_WORKFLOW``)."""

    tasks: str | None
    linked: bool


def batch_params(registry: JobRegistry, default_queue: str, calls: Iterable[BatchItem]) -> Batch:
    """The JSON document of ``QUEUE_TASKS`` (its ``tasks``) for ``(call, kwargs, link)``
    items, in input order. A task with parents (the call's ``depends_on``, or a link) also
    gets the fields ``depends_on``, ``after`` and ``run_after_failure`` of
    ``QUEUE_WORKFLOW``. Raises as :func:`task_params`, and :class:`ConfigurationError` for
    ``depends_on`` that is not a list of task ids or a link to a task that is not earlier in
    the batch (a cycle) or whose job cannot overlap (its lock_id could skip it, leaving its
    dependents nothing to wait for); all before anything is sent. Each task's kwargs are
    checked and dumped as they come, so a caller may reuse one dict for the next task.
    """
    texts: list[str] = []
    overlaps: list[bool] = []
    linked = False
    last: Call | None = None
    key: tuple[Any, ...] | None = None
    job: Job | None = None
    head = ""
    parents: list[str] = []
    parents_of: Call | None = None  # the call whose depends_on ``parents`` holds
    for position, (call, kwargs, *linked_as) in enumerate(calls):
        link: Link | None = linked_as[0] if linked_as else None
        if call is not last:
            new_key = _template_key(call)
            if job is None or new_key != key:
                job, common = common_params(registry, default_queue, call)
                head = _json_head(common)
            key, last = new_key, call
        assert job is not None
        overlap, text, limit_key = kwargs_params(job, kwargs)
        overlaps.append(overlap)
        task = (
            f'{head},"can_overlap":{"true" if overlap else "false"},'
            f'"limit_key":{"null" if limit_key is None else json.dumps(limit_key)},'
            f'"kwargs":{text}'
        )
        if call is not parents_of:
            parents, parents_of = parent_ids(call.depends_on), call
        if parents or link is not None:
            linked = True
            link = link or Link()
            after = range(position) if link.after_all else link.after
            fields = {
                "depends_on": parents,
                "after": [_earlier(position, at, overlaps) for at in after],
                "run_after_failure": link.run_after_failure or bool(job.run_after_failure),
            }
            task = f"{task},{json.dumps(fields)[1:]}"
        else:
            task = f"{task}}}"
        texts.append(task)
    return Batch(f"[{','.join(texts)}]" if texts else None, linked)


def parent_ids(depends_on: object) -> list[str]:
    """``depends_on`` (an iterable of task ids, or None) as canonical ids, first occurrence
    of each kept, in order. Raises :class:`ConfigurationError` for a single id given as a
    str and :class:`InvalidTaskId` for an id that is not a UUID."""
    if depends_on is None:
        return []
    if isinstance(depends_on, str | bytes) or not isinstance(depends_on, Iterable):
        raise ConfigurationError(
            f"depends_on must be a list of task ids, not {type(depends_on).__name__} "
            f"({depends_on!r:.60}); for one parent pass [task_id]; nothing was queued"
        )
    return list(dict.fromkeys(require_task_id(task_id) for task_id in depends_on))


def _earlier(position: int, at: int, overlaps: list[bool]) -> int:
    """``at``, checked as the position of a parent of the task at ``position`` in its batch."""
    if not 0 <= at < position:
        raise ConfigurationError(
            f"task {position} of the batch cannot depend on task {at} of it: a task depends "
            "only on earlier ones (anything else would make a cycle); nothing was queued"
        )
    if not overlaps[at]:
        raise ConfigurationError(
            f"task {at} of the batch has others depending on it, so its job must allow "
            "overlapping tasks (can_overlap): a live duplicate would skip it and leave its "
            "dependents nothing to wait for; nothing was queued"
        )
    return at


def _duration(text: str) -> float:
    """A ``countdown`` string in seconds, as :func:`parse_duration` reads it."""
    try:
        return parse_duration(text, "countdown")
    except ConfigurationError:
        raise ConfigurationError(
            f"countdown must be seconds, a timedelta or a duration such as '90s', '5m', "
            f"'2h' or '7d', not {text!r}"
        ) from None


def _template_key(call: Call) -> tuple[Any, ...]:
    """What decides a call's :func:`common_params` (its kwargs aside), each value with its
    type so that ``True``, ``1`` and ``1.0`` (equal in Python) are each checked."""
    try:
        meta: object = json.dumps(call.meta_params, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        meta = object()  # never equal: common_params says what is wrong
    fields = (call.expiry, call.run_at, call.countdown, call.queue, call.priority)
    return (call.jobname, meta, *((type(value), value) for value in fields))


def _json_head(params: CommonParams) -> str:
    """The common fields of one task of ``QUEUE_TASKS`` as the start of a JSON object (no
    closing brace): timestamps as ISO 8601 text in UTC, meta_params as its checked JSON."""
    fields = {
        name: value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
        for name, value in params.items()
        if name != "meta_params"
    }
    return f'{json.dumps(fields)[:-1]},"meta_params":{params["meta_params"]}'

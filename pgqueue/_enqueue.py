"""Turning enqueue calls into the parameters of ``QUEUE_TASK`` (one task) and ``QUEUE_TASKS``
(a batch): job defaults applied, every value checked, nothing sent before all of it passed.

A batch travels as one JSON document (``{"tasks": "[{...}, ...]"}``) that the statement reads
with ``jsonb_to_recordset``: one parameter whatever the batch size, dumped by Python's json in C
in one call. Tasks of one batch that share everything but their kwargs (``queue_tasks``) have
their job defaults worked out once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from . import tracing
from ._values import check_priority, check_queue, dump_json, dump_kwargs, time_params
from .bulk import Call, lock_order
from .errors import ConfigurationError, SerializationError
from .jobs import Job, JobRegistry

#: Arguments no job can take: every job is called as ``job(consumer, **kwargs)``.
RESERVED_KWARGS = frozenset({"self", "consumer"})


def common_params(
    registry: JobRegistry, default_queue: str, call: Call
) -> tuple[Job, dict[str, Any]]:
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
    start_at, start_in = time_params(
        call.run_at if call.run_at is not None else call.countdown,
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
    }


def check_kwargs(job: Job, kwargs: object) -> Mapping[str, Any]:
    """``kwargs`` if it is a dict a job can be called with; else :class:`ConfigurationError`."""
    if not isinstance(kwargs, Mapping):
        raise ConfigurationError(
            f"the kwargs of each task of job {job.name!r} must be a dict, not "
            f"{type(kwargs).__name__} ({kwargs!r:.60}); nothing was queued"
        )
    taken = RESERVED_KWARGS.intersection(kwargs)
    if taken:
        raise ConfigurationError(
            f"job {job.name!r} cannot take an argument named {sorted(taken)[0]!r}: every "
            "job is called as job(consumer, **kwargs); nothing was queued"
        )
    return kwargs


def task_params(
    registry: JobRegistry, default_queue: str, call: Call, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The parameters of ``QUEUE_TASK`` for one task; raises as :func:`common_params`, and
    :class:`SerializationError` for kwargs that are not JSON."""
    job, params = common_params(registry, default_queue, call)
    check_kwargs(job, kwargs)
    params["can_overlap"] = job.overlaps(dict(kwargs))
    params["kwargs"] = dump_kwargs(job.name, dict(kwargs))
    return params


def batch_params(
    registry: JobRegistry,
    default_queue: str,
    calls: Iterable[tuple[Call, Mapping[str, Any]]],
) -> tuple[dict[str, str], list[int] | None] | None:
    """The parameter of ``QUEUE_TASKS`` for ``(call, kwargs)`` pairs (the call's own kwargs
    are ignored), the tasks in :func:`pgqueue.bulk.lock_order`, and that order (None: input
    order); None for no tasks. Raises as :func:`task_params`, before anything is sent.
    """
    rows: list[dict[str, Any]] = []
    last: Call | None = None
    last_key: tuple[Any, ...] = ()
    job: Job | None = None
    common: dict[str, Any] = {}
    for call, kwargs in calls:
        if job is None or call is not last:
            # ``last`` keeps the previous call alive, so the id() of its meta_params in the key
            # cannot be reused by a new dict of a later call.
            key = _template_key(call)
            if job is None or key != last_key:
                job, common = common_params(registry, default_queue, call)
                common = _as_json_fields(common)
            last, last_key = call, key
        check_kwargs(job, kwargs)
        rows.append({**common, "can_overlap": job.overlaps(dict(kwargs)), "kwargs": kwargs})
    if not rows:
        return None
    order = lock_order(rows)
    return {"tasks": _dump_rows(rows if order is None else [rows[n] for n in order])}, order


def _template_key(call: Call) -> tuple[Any, ...]:
    """What decides a call's :func:`common_params` (its kwargs aside)."""
    return (
        call.jobname,
        id(call.meta_params),
        call.expiry,
        call.run_at,
        call.countdown,
        call.queue,
        call.priority,
    )


def _as_json_fields(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the values JSON has no type for turned into what ``jsonb_to_recordset``
    reads back: timestamps as ISO 8601 text, meta_params as the JSON value itself."""
    out = dict(params)
    out["meta_params"] = json.loads(params["meta_params"])
    for name in ("run_at", "expiry_at"):
        value = params[name]
        if isinstance(value, datetime):
            out[name] = value.isoformat()
    return out


def _dump_rows(rows: list[dict[str, Any]]) -> str:
    """The batch as one JSON document; a task whose kwargs are not JSON raises the error
    naming that task's job and argument."""
    try:
        return dump_json(rows, "the batch")
    except SerializationError:
        for row in rows:
            dump_kwargs(row["name"], dict(row["kwargs"]))
        raise

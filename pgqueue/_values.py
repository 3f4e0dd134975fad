"""Turning Python values into what the task table stores: JSON text and time parameters."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from .errors import ConfigurationError, SerializationError


def dump_json(value: Any, what: str) -> str:
    """Encode ``value`` as JSON text; raise :class:`SerializationError` naming ``what``.

    NaN and infinities are refused too: PostgreSQL's jsonb cannot store them.
    """
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{what} must be JSON-serializable (str, int, float, bool, None, list, dict): {exc}. "
            "Pass plain data, e.g. an id instead of an object; nothing was queued."
        ) from None


def dump_kwargs(jobname: str, kwargs: dict[str, Any]) -> str:
    """Encode a job's kwargs, naming the first argument that is not JSON in the error."""
    for key, value in kwargs.items():
        dump_json(value, f"argument {key!r} of job {jobname!r} ({type(value).__name__})")
    return dump_json(kwargs, f"the arguments of job {jobname!r}")


def time_params(
    value: float | timedelta | datetime | None, what: str
) -> tuple[datetime | None, float | None]:
    """Split a time given as seconds-from-now, a timedelta or an aware datetime into
    ``(absolute, seconds_from_now)`` for SQL, which adds the seconds to the database's ``now()``.

    A naive datetime is refused with :class:`ConfigurationError`: it would be read as UTC by
    the database or as local time by the host, and pgqueue does not guess which you meant.
    """
    if value is None:
        return None, None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigurationError(
                f"{what} is a naive datetime ({value.isoformat()}); pass an aware one, e.g. "
                "datetime.now(timezone.utc) + timedelta(hours=1), or seconds from now"
            )
        return value, None
    if isinstance(value, timedelta):
        return None, value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{what} must be seconds, a timedelta or an aware datetime, not {value!r}"
        )
    return None, float(value)


def parse_task_id(task_id: object) -> str | None:
    """The canonical text of a task id, or None when it is not a UUID."""
    try:
        return str(uuid.UUID(str(task_id)))
    except ValueError:
        return None

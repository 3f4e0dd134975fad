"""Turning Python values into what the task table stores: JSON text and time parameters."""

from __future__ import annotations

import decimal
import json
import math
import operator
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson

from ._errors import ConfigurationError, InvalidTaskId, SerializationError

#: A run of digits that may be an integer beyond 64 bits (2**63 has 19 digits).
_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")

#: An escaped NUL character (``\\u0000``) in JSON text, not preceded by an escaped backslash.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

#: Bounds of a time given in seconds: finite, and small enough that the database's
#: ``now() + interval`` stays a valid timestamp (1e11 s is about 3,170 years).
MAX_SECONDS = 1e11

#: A duration as the command line and ``countdown`` take it: a number and an optional unit.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

#: The range of PostgreSQL's ``integer`` (the priority column).
INT4_RANGE = range(-(2**31), 2**31)

#: The longest queue name in UTF-8 bytes: the channel ``<queue>_task_started`` must fit in
#: PostgreSQL's 63-byte identifiers (the task table also caps queue names at 48 characters).
MAX_QUEUE_BYTES = 48


#: The encoder of :func:`dump_json`, made once: ``json.dumps`` with options builds one per call.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def dump_json(value: Any, what: str) -> str:
    """Encode ``value`` as JSON text; raise :class:`SerializationError` naming ``what``.

    Refused besides non-JSON types, as PostgreSQL's jsonb cannot store them: NaN and
    infinities, strings (values or keys) holding a NUL character ``"\\x00"`` or an unpaired
    surrogate, and nesting deeper than Python's recursion limit. The check happens before
    anything is sent, so a caller's transaction (``connection=``) stays usable.
    """
    if type(value) is dict and not value:  # no arguments, no meta_params: the usual case
        return "{}"
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _not_json(what, f"{exc}") from None
    if "\\u0000" in text and _ESCAPED_NUL.search(text):  # the regex alone is slow
        raise _not_json(what, "a string holds a NUL character (\\x00), which PostgreSQL refuses")
    if "\\ud" in text:  # surrogates are escaped: decoded again, valid pairs join into one
        try:
            json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _not_json(what, "a string holds an unpaired surrogate character") from None
    return text


def load_json(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON text the database sent (a json or jsonb value).

    orjson decodes it several times faster than Python's json, but reads integers beyond 64
    bits as floats: text holding a run of 19 or more digits goes to Python's json, which keeps
    them exact (and turns integers too long for ``int()``, beyond 4,300 digits, into
    ``Decimal`` rather than failing).
    """
    text = bytes(data) if isinstance(data, memoryview) else data
    digits = _LONG_DIGITS if isinstance(text, str) else _LONG_DIGITS_BYTES
    if not digits.search(text):  # type: ignore[arg-type]
        return orjson.loads(text)
    try:
        return json.loads(text)
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        return json.loads(text, parse_int=decimal.Decimal)


def _not_json(what: str, why: str) -> SerializationError:
    return SerializationError(
        f"{what} must be JSON-serializable (str, int, float, bool, None, list, dict): {why}. "
        "Pass plain data, e.g. an id instead of an object; nothing was queued."
    )


def check_text(value: object, what: str) -> str:
    """``value`` if it is a str PostgreSQL can store as text (no NUL character), else raise
    :class:`ConfigurationError` naming ``what``."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a str, not {type(value).__name__}")
    if "\x00" in value:
        raise ConfigurationError(f"{what} must not contain a NUL character (\\x00): {value!r}")
    return value


def check_queue(queue: object) -> str:
    """``queue`` if it is a valid queue name: a non-empty str of at most
    :data:`MAX_QUEUE_BYTES` UTF-8 bytes without NUL nor comma; else raise
    :class:`ConfigurationError`. Commas separate the queues of ``--queues``, so a name holding
    one could be queued to but never consumed; the task table refuses it too (CHECK
    ``task_queue_no_comma`` of revision pgqueue_0005_contract)."""
    name = check_text(queue, "queue")
    if "," in name:
        raise ConfigurationError(
            f"queue names must not contain a comma (lists of queues are comma-separated): "
            f"{name[:60]!r}"
        )
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_QUEUE_BYTES:
        raise ConfigurationError(
            f"queue must be 1 to {MAX_QUEUE_BYTES} bytes in UTF-8 (its NOTIFY channels are "
            f"'<queue>_task_queued' ...), not {name[:60]!r}"
        )
    return name


def check_priority(priority: object) -> int:
    """``priority`` as an int in PostgreSQL's ``integer`` range; raise
    :class:`ConfigurationError` for anything else (a float or a str included)."""
    try:
        value = operator.index(priority)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigurationError(f"priority must be an int, not {priority!r}") from None
    if isinstance(priority, bool) or value not in INT4_RANGE:
        raise ConfigurationError(
            f"priority must be an int from {INT4_RANGE.start} to {INT4_RANGE.stop - 1}, "
            f"not {priority!r}"
        )
    return value


def dump_kwargs(jobname: str, kwargs: dict[str, Any]) -> str:
    """Encode a job's kwargs, naming the first argument that is not JSON in the error.

    The kwargs are encoded whole first; only when that fails is each argument encoded on its
    own to name the culprit (any argument that fails alone fails the whole too), so that the
    common case encodes once."""
    try:
        return dump_json(kwargs, f"the arguments of job {jobname!r}")
    except SerializationError:
        for key, value in kwargs.items():
            dump_json(value, f"argument {key!r} of job {jobname!r} ({type(value).__name__})")
        raise


def time_params(
    value: float | timedelta | datetime | None, what: str
) -> tuple[datetime | None, float | None]:
    """Split a time given as seconds-from-now, a timedelta or an aware datetime into
    ``(absolute, seconds_from_now)`` for SQL, which adds the seconds to the database's ``now()``.

    A naive datetime is refused with :class:`ConfigurationError`: it would be read as UTC by
    the database or as local time by the host, and pgqueue does not guess which you meant.
    So are NaN, infinities and more than :data:`MAX_SECONDS` seconds either way.
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
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{what} must be seconds, a timedelta or an aware datetime, not {value!r}"
        )
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or abs(seconds) > MAX_SECONDS:
        raise ConfigurationError(
            f"{what} must be a finite number of seconds of at most {MAX_SECONDS:g} "
            f"(about 3,000 years), not {value!r}"
        )
    return None, seconds


def parse_duration(text: str, what: str = "duration") -> float:
    """``"7d"`` -> 604800.0: a number with an optional unit s, m, h, d or w (default seconds).

    Raises :class:`ConfigurationError` for anything else.
    """
    match = _DURATION.match(text)
    if not match:
        raise ConfigurationError(
            f"{what} {text!r} is not a duration: use a number and a unit s, m, h, d or w "
            "(e.g. 90s, 30m, 12h, 7d)"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    if seconds > MAX_SECONDS:
        raise ConfigurationError(f"{what} {text!r} is too long: at most {MAX_SECONDS:g} seconds")
    return seconds


def parse_task_id(task_id: object) -> str | None:
    """The canonical text of a task id, or None when it is not a UUID."""
    try:
        return str(uuid.UUID(str(task_id)))
    except ValueError:
        return None


def require_task_id(task_id: object) -> str:
    """The canonical text of a task id; :class:`InvalidTaskId` when it is no UUID."""
    valid = parse_task_id(task_id)
    if valid is None:
        raise InvalidTaskId(
            f"{task_id!r:.80} is not a task id: ids are UUIDs such as "
            "3f2b8c1e-5d4a-4c2b-9e7f-0a1b2c3d4e5f (see `pgqueue list`)"
        )
    return valid

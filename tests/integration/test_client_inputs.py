"""Wrong inputs at the client's public entry points: each gets pgqueue's own clear error,
raised before anything is sent, so nothing is queued and a caller's transaction stays usable.

Found by trying to break the finished client API; each case used to end in a raw driver error
(``UntranslatableCharacter``, ``DataError``, ``DatetimeFieldOverflow``, ``InvalidParameterValue``
"channel name too long"), a bare ``ValueError``/``IndexError``/``RecursionError``, a silently
different task, or a hang.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import Call, TaskBackend
from pgqueue._errors import ConfigurationError, SerializationError
from tests.support.callers import run_async
from tests.support.fixtures import sql


def _count(dsn: str) -> int:
    return int(sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"])


def _nested(depth: int) -> list[Any]:
    top: list[Any] = []
    inner = top
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return top


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        (dict(a="x\x00y", b=1), SerializationError, "NUL"),
        ({"a\x00": 1, "b": 1}, SerializationError, "NUL"),
        (dict(a={"deep": ["\x00"]}, b=1), SerializationError, "NUL"),
        (dict(meta_params={"m": "\x00"}, a=1, b=1), SerializationError, "NUL"),
        (dict(a="\udc80", b=1), SerializationError, "surrogate"),
        (dict(a=_nested(20_000), b=1), SerializationError, "recursion"),
        (dict(meta_params=[1, 2], a=1, b=1), ConfigurationError, "meta_params must be a dict"),
        (dict(queue="q\x00", a=1, b=1), ConfigurationError, "NUL"),
        (dict(queue="", a=1, b=1), ConfigurationError, "1 to 48 bytes"),
        (dict(queue="q" * 49, a=1, b=1), ConfigurationError, "1 to 48 bytes"),
        # 20 characters, but 60 bytes: '<queue>_task_queued' is no valid channel name
        (dict(queue="キ" * 20, a=1, b=1), ConfigurationError, "1 to 48 bytes"),
        (dict(priority="high", a=1, b=1), ConfigurationError, "priority"),
        (dict(priority=3.9, a=1, b=1), ConfigurationError, "priority"),
        (dict(priority=2**40, a=1, b=1), ConfigurationError, "priority"),
        (dict(expiry=math.nan, a=1, b=1), ConfigurationError, "finite"),
        (dict(expiry=math.inf, a=1, b=1), ConfigurationError, "finite"),
        (dict(expiry=1e300, a=1, b=1), ConfigurationError, "finite"),
        (dict(expiry=timedelta.max, a=1, b=1), ConfigurationError, "finite"),
        (dict(countdown=math.nan, a=1, b=1), ConfigurationError, "finite"),
    ],
    ids=lambda value: repr(value)[:40] if not isinstance(value, dict) else None,
)
@pytest.mark.slow
def test_bad_queue_task_input_is_refused_before_sending(
    dsn: str, backend: TaskBackend, call: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        backend.queue_task("add", **call)
    assert _count(dsn) == 0


def test_nul_in_kwargs_leaves_the_callers_transaction_usable(
    dsn: str, backend: TaskBackend
) -> None:
    """F18's transactional enqueue: a NUL in one argument used to reach the server, which
    refused the jsonb and aborted the caller's transaction, losing its business write."""
    sql(dsn, "CREATE TABLE orders (id int)")
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO orders VALUES (1)")
        with pytest.raises(SerializationError):
            backend.queue_task("add", connection=conn, a="bad\x00", b=1)
        with pytest.raises(SerializationError):
            backend.queue_tasks("add", [{"a": 1, "b": 2}, {"a": "\x00", "b": 2}], connection=conn)
        task_id = backend.queue_task("add", connection=conn, a=1, b=2)
        conn.commit()
    assert sql(dsn, "SELECT id FROM orders") == [{"id": 1}]
    assert sql(dsn, "SELECT id::text FROM pgqueue.task") == [{"id": task_id}]


def test_text_that_merely_looks_like_an_escaped_nul_is_kept(backend: TaskBackend) -> None:
    """A backslash followed by ``u0000`` is plain text, not a NUL: stored and read back as is."""
    for text in ("\\u0000", "\\\\u0000x", "a\\", "\u2603 \U0001f600"):
        task_id = backend.queue_task("add", a=text, b=1)
        assert task_id is not None
        task = backend.get_task(task_id)
        assert task is not None and task.kwargs["a"] == text


def test_multibyte_queue_of_48_bytes_is_accepted(backend: TaskBackend) -> None:
    task_id = backend.queue_task("add", queue="キ" * 16, a=1, b=1)
    task = backend.get_task(task_id or "")
    assert task is not None and task.queue == "キ" * 16


@pytest.mark.parametrize(
    "kwargs_list", ["abc", {"a": 1, "b": 2}, [None], [{"a": 1, "b": 1}, 5]], ids=repr
)
def test_bulk_enqueue_with_a_wrong_shape_queues_nothing(
    dsn: str, backend: TaskBackend, kwargs_list: Any
) -> None:
    with pytest.raises(ConfigurationError):
        backend.queue_tasks("add", kwargs_list)
    assert _count(dsn) == 0


@pytest.mark.parametrize("item", [("add",), "add", ("add", {"a": 1}, 3), None], ids=repr)
def test_queue_many_refuses_what_is_not_a_call_or_pair(
    dsn: str, backend: TaskBackend, item: Any
) -> None:
    with pytest.raises(ConfigurationError, match="Call or a"):
        backend.queue_many([Call("add", {"a": 1, "b": 1}), item])
    assert _count(dsn) == 0


def test_get_tasks_refuses_a_single_id_string(backend: TaskBackend) -> None:
    """Iterating a str id used to look up its characters and silently return []."""
    task_id = backend.queue_task("add", a=1, b=1)
    assert task_id is not None
    with pytest.raises(ConfigurationError, match="get_task"):
        backend.get_tasks(task_id)
    assert [task.id for task in backend.get_tasks([task_id])] == [task_id]


@pytest.mark.parametrize("timeout", [math.nan, "1"], ids=repr)
def test_wait_for_task_refuses_a_timeout_that_is_no_number(
    backend: TaskBackend, timeout: Any
) -> None:
    """``timeout=nan`` used to wait for ever (every comparison with NaN is false)."""
    task_id = backend.queue_task("add", a=1, b=1)
    with pytest.raises(ConfigurationError, match="timeout"):
        backend.wait_for_task(task_id or "", timeout=timeout)

    async def wait() -> None:
        await backend.await_task(task_id or "", timeout=timeout)

    with pytest.raises(ConfigurationError, match="timeout"):
        run_async(wait())


def test_revoke_reason_with_nul_is_refused_and_task_stays_queued(backend: TaskBackend) -> None:
    task_id = backend.queue_task("add", a=1, b=1)
    assert task_id is not None
    with pytest.raises(ConfigurationError, match="NUL"):
        backend.revoke(task_id, reason="a\x00b")
    task = backend.get_task(task_id)
    assert task is not None and task.status_string() == "QUEUED"


def test_async_twins_refuse_the_same_inputs(dsn: str, backend: TaskBackend) -> None:
    async def main() -> None:
        try:
            with pytest.raises(SerializationError, match="NUL"):
                await backend.aqueue_task("add", a="\x00", b=1)
            with pytest.raises(ConfigurationError, match="priority"):
                await backend.aqueue_tasks("add", [{"a": 1, "b": 1}], priority="x")  # type: ignore[arg-type]
            with pytest.raises(ConfigurationError):
                await backend.aqueue_many(["add"])  # type: ignore[list-item]
            with pytest.raises(ConfigurationError):
                await backend.aget_tasks("0d9b4a3e-0000-0000-0000-000000000000")
        finally:
            await backend.aclose()

    run_async(main())
    assert _count(dsn) == 0

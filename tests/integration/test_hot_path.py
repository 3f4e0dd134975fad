"""Breaker tests of the hot-path work: orjson decoding, round-trip-free pool checks, spans
skipped without a provider, the positional claim on the claimer's connection with one generic
plan (claims stay durable), and bulk enqueue as one JSON document with job defaults shared per
template.

Everything runs on the real PostgreSQL of the test suite. Jobs used only here are defined in
this module (``hp_*``) and loaded by the workers from it.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from psycopg.rows import dict_row
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import pgqueue
from pgqueue import TaskBackend, states
from pgqueue._bulk import Call
from pgqueue._db import acheck_pooled, check_pooled, connect
from pgqueue._errors import ConfigurationError, SerializationError
from tests.support.callers import run_async
from tests.support.crash import terminate_backends, wait_until
from tests.support.fixtures import TEST_JOBS, Server, sql

HERE = __name__
JOBS = [TEST_JOBS, HERE]
READY = {states.SUCCESS, states.FAILURE, states.REVOKED}

# -- jobs of this module -------------------------------------------------------------------

#: task id -> how many times a job of this module ran it (workers run in this process).
RUN_COUNT: defaultdict[str, int] = defaultdict(int)
#: The order in which ``hp_order`` ran, as ``(queue, priority)``.
ORDER: list[tuple[str, int]] = []
#: key -> one Event per run of ``hp_hold`` (run 1 waits on the first, and so on).
RELEASE: defaultdict[str, list[threading.Event]] = defaultdict(
    lambda: [threading.Event() for _ in range(4)]
)
#: key -> the attempt numbers of the runs of ``hp_hold``, in run order.
HELD: defaultdict[str, list[int]] = defaultdict(list)
LOCK = threading.Lock()


def canonical(value: Any) -> Any:
    """``value`` with dicts as sorted item lists, so that its repr tells int from float and
    does not depend on key order (jsonb reorders keys)."""
    if isinstance(value, dict):
        return sorted((str(k), canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


@pgqueue.job()
def hp_echo(consumer: pgqueue.TaskConsumer, **kwargs: Any) -> dict[str, str]:
    """The exact Python values the job received (kwargs and the task's meta_params)."""
    return {
        "kwargs": repr(canonical(kwargs)),
        "meta": repr(canonical(consumer.task.meta_params)),
        "kwargs_type": type(consumer.task.kwargs).__name__,
        "meta_type": type(consumer.task.meta_params).__name__,
    }


@pgqueue.job()
def hp_count(consumer: pgqueue.TaskConsumer, n: int) -> int:
    """Count the runs of each task."""
    with LOCK:
        RUN_COUNT[consumer.task_id] += 1
    return n


@pgqueue.job()
def hp_order(consumer: pgqueue.TaskConsumer, label: str) -> str:
    """Record the order tasks ran in."""
    with LOCK:
        ORDER.append((consumer.task.queue, consumer.task.priority))
    return label


@pgqueue.job()
def hp_hold(consumer: pgqueue.TaskConsumer, key: str, child: bool = False) -> int:
    """Optionally queue a child task (on a queue no worker reads), then wait until the test
    releases this run; return which run of ``key`` this was (1 for the first)."""
    if child:
        consumer.backend.queue_task("add", a=1, b=2, queue="nobody-reads-this")
    with LOCK:
        HELD[key].append(consumer.attempt)
        run = len(HELD[key])
        event = RELEASE[key][run - 1]
    event.wait(30)
    return run


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
def client_jobs() -> list[str]:
    return JOBS


def exact_rows(dsn: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    """Rows read on a plain psycopg connection (Python's json decodes json/jsonb: exact)."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def task_rows(dsn: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = exact_rows(dsn, "SELECT * FROM pgqueue.task WHERE id = ANY(%s::uuid[])", (ids,))
    return {str(row["id"]): row for row in rows}


def wait_ready(dsn: str, ids: list[str], timeout: float, worker: Any = None) -> dict[str, Any]:
    """Wait until every task is SUCCESS, FAILURE or REVOKED; fail at once if ``worker`` (a
    ``start_worker`` handle) died meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        rows = task_rows(dsn, ids)
        if all(rows[i]["status"] in READY for i in ids):
            return rows
        if worker is not None and not worker.thread.is_alive():
            pending = {i: rows[i]["status"] for i in ids if rows[i]["status"] not in READY}
            raise AssertionError(f"the worker died ({worker.error!r}); tasks left: {pending}")
        if time.monotonic() > deadline:
            pending = {i: rows[i]["status"] for i in ids if rows[i]["status"] not in READY}
            raise AssertionError(f"tasks not finished after {timeout}s: {pending}")
        time.sleep(0.05)


def count_tasks(dsn: str) -> int:
    return int(exact_rows(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"])


# == 1. json/jsonb decoded with orjson =====================================================

BIG_INTS = {
    "above_u64": 2**64 + 1,
    "below_i64": -(2**63) - 1,
    "huge": 10**30 + 7,
    "u64_max": 2**64 - 1,
    "i64_min": -(2**63),
}


def test_client_reads_back_integers_beyond_64_bits_exactly(dsn: str, client: TaskBackend) -> None:
    """kwargs holding integers beyond 64 bits are stored exactly by jsonb; reading the task
    back through the backend's own pool (orjson decoding) must give the same ints."""
    task_id = client.queue_task("hp_echo", **BIG_INTS)
    assert task_id is not None
    stored = json.loads(exact_rows(dsn, "SELECT kwargs::text AS k FROM pgqueue.task")[0]["k"])
    assert stored == BIG_INTS  # the database has them exactly
    task = client.get_task(task_id)
    assert task is not None
    assert repr(canonical(task.kwargs)) == repr(canonical(BIG_INTS))


def test_worker_passes_integers_beyond_64_bits_to_the_job_exactly(
    dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """The claim decodes kwargs with load_json: a job must receive its big ints as ints."""
    worker = start_worker(task_paths=JOBS)
    single = client.queue_task("hp_echo", **BIG_INTS)
    bulk = client.queue_tasks("hp_echo", [BIG_INTS]).ids[0]
    assert single is not None and bulk is not None
    rows = wait_ready(dsn, [single, bulk], 20, worker)
    for task_id in (single, bulk):
        assert rows[task_id]["status"] == states.SUCCESS, rows[task_id]["error"]
        assert rows[task_id]["result"]["kwargs"] == repr(canonical(BIG_INTS))


def test_jsonb_numbers_beyond_the_double_range_fall_back_to_python_json(
    dsn: str, client: TaskBackend
) -> None:
    """A number orjson refuses outright (1e400, inserted by SQL) is decoded by the fallback."""
    rows = sql(
        dsn,
        "INSERT INTO pgqueue.task (name, queue, kwargs) "
        "VALUES ('hp_echo', 'parked', '{\"n\": 1e400, \"m\": -1e400}') RETURNING id::text AS id",
    )
    task = client.get_task(rows[0]["id"])
    assert task is not None
    assert task.kwargs == {"n": 10**400, "m": -(10**400)}


ODD_KWARGS: dict[str, Any] = {
    'quote"key': "a\"b'c",
    "back\\slash": "C:\\temp\\new",
    "new\nline\ttab": "line1\nline2\r\n",
    "": "empty key",
    "é-ü-ß": "ünïcödé",
    "😀": "🎉 emoji 👩\u200d👩\u200d👧",
    "line\u2028sep": "\u2028\u2029",
    "ctrl\x01": "\x1f\x7f",
    "looks_like_nul": "\\u0000",
    "floats": [0.1, 2.5, 1e-300, 123456.789, -3.25],
    "ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1],
    "nested": {"a": [{"b": {"c": [None, True, False, {}, []]}}], "z": {"y": {"x": "w"}}},
}


def test_odd_keys_and_values_reach_the_job_unchanged(
    dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """Keys that need escaping, unicode, emoji, floats, 64-bit edge ints and deep nesting go
    through single and bulk enqueue, the claim's decoding and a job call unchanged."""
    worker = start_worker(task_paths=JOBS)
    meta = {"who": "😀", "quote": '"', "nested": {"k": [1.5, None]}}
    single = client.queue_task("hp_echo", meta_params=meta, **ODD_KWARGS)
    many = client.queue_many([Call("hp_echo", ODD_KWARGS, meta_params=meta)]).ids[0]
    tasks = client.queue_tasks("hp_echo", [ODD_KWARGS, ODD_KWARGS], meta_params=meta).ids
    ids = [i for i in [single, many, *tasks] if i is not None]
    assert len(ids) == 4
    rows = wait_ready(dsn, ids, 20, worker)
    for task_id in ids:
        row = rows[task_id]
        assert row["status"] == states.SUCCESS, row["error"]
        assert row["kwargs"] == ODD_KWARGS
        assert row["result"]["kwargs"] == repr(canonical(ODD_KWARGS))
        assert row["result"]["meta"] == repr(canonical(meta))


# == tasks inserted by SQL with kwargs/meta_params that are not objects ====================


def test_json_null_kwargs_and_meta_params_from_sql_run_with_empty_dicts(
    dsn: str, start_worker: Any
) -> None:
    """JSON null (not SQL NULL: the columns are NOT NULL) in kwargs and meta_params."""
    rows = sql(
        dsn,
        "INSERT INTO pgqueue.task (name, queue, kwargs, meta_params) VALUES "
        "('hp_echo', 'tasks', 'null', 'null'), ('hp_echo', 'tasks', '{}', 'null'), "
        "('hp_echo', 'tasks', 'null', '{}') RETURNING id::text AS id",
    )
    ids = [r["id"] for r in rows]
    worker = start_worker(task_paths=JOBS)
    done = wait_ready(dsn, ids, 20, worker)
    for task_id in ids:
        assert done[task_id]["status"] == states.SUCCESS, done[task_id]["error"]
        assert done[task_id]["result"]["kwargs"] == "[]"
        assert done[task_id]["result"]["meta"] == "[]"


@pytest.mark.parametrize("meta_params", ["[]", "false", "0", '""'])
def test_meta_params_that_are_falsy_json_from_the_sql_function_run_as_before(
    dsn: str, start_worker: Any, meta_params: str
) -> None:
    """pgqueue.queue_task() (the supported SQL enqueue) checks kwargs but not meta_params. A
    falsy non-object meta_params was read as {} before the positional claim (Task.from_row's
    ``or {}``); the job must still run, and see meta_params as a dict."""
    rows = sql(
        dsn,
        "SELECT pgqueue.queue_task('hp_echo', '{\"x\": 1}', meta_params => %s::jsonb)::text AS id",
        (meta_params,),
    )
    good = sql(dsn, "SELECT pgqueue.queue_task('hp_echo', '{\"x\": 2}')::text AS id")
    ids = [rows[0]["id"], good[0]["id"]]
    worker = start_worker(task_paths=JOBS)
    done = wait_ready(dsn, ids, 15, worker)
    for task_id in ids:
        assert done[task_id]["status"] == states.SUCCESS, done[task_id]["error"]
    assert done[ids[0]]["result"]["meta_type"] == "dict"
    assert worker.thread.is_alive()


@pytest.mark.parametrize("kwargs", ["[]", "false", "0", '""'])
def test_kwargs_that_are_falsy_json_from_plain_sql_run_as_before(
    dsn: str, start_worker: Any, kwargs: str
) -> None:
    """A row inserted by plain SQL with kwargs [] (or false, 0, ""): Task.from_row read it as
    {} and the job ran without arguments; the positional claim must not kill the worker."""
    rows = sql(
        dsn,
        "INSERT INTO pgqueue.task (name, queue, kwargs) VALUES ('hp_echo', 'tasks', %s::jsonb), "
        "('hp_echo', 'tasks', '{\"x\": 2}') RETURNING id::text AS id",
        (kwargs,),
    )
    ids = [r["id"] for r in rows]
    worker = start_worker(task_paths=JOBS)
    done = wait_ready(dsn, ids, 15, worker)
    for task_id in ids:
        assert done[task_id]["status"] == states.SUCCESS, done[task_id]["error"]
    assert done[ids[0]]["result"]["kwargs_type"] == "dict"
    assert worker.thread.is_alive()


def test_a_task_with_array_kwargs_fails_alone_without_stranding_its_claim_batch(
    dsn: str, start_worker: Any
) -> None:
    """kwargs '[1, 2]' cannot be passed as keyword arguments. That one task should end
    FAILURE; the worker must survive and the tasks claimed with it must still run (a claim
    marks all of them STARTED at once)."""
    rows = sql(
        dsn,
        "INSERT INTO pgqueue.task (name, queue, priority, kwargs) VALUES "
        "('hp_echo', 'tasks', 10, '[1, 2]'), ('hp_echo', 'tasks', 0, '{\"x\": 1}'), "
        "('hp_echo', 'tasks', 0, '{\"x\": 2}'), ('hp_echo', 'tasks', 0, '{\"x\": 3}') "
        "RETURNING id::text AS id",
    )
    ids = [r["id"] for r in rows]
    worker = start_worker(task_paths=JOBS, backlog=4)
    done = wait_ready(dsn, ids, 15, worker)
    assert done[ids[0]]["status"] == states.FAILURE
    for task_id in ids[1:]:
        assert done[task_id]["status"] == states.SUCCESS, done[task_id]["error"]


# == 3. spans skipped without a tracer provider ============================================


@pytest.fixture
def fresh_otel() -> Iterator[None]:
    """OpenTelemetry's global tracer provider unset for this test (another test module may
    have set one: it can be set once per process), restored afterwards."""
    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE)
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    try:
        yield
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


def test_a_tracer_provider_set_after_the_worker_started_is_used(
    dsn: str, client: TaskBackend, start_worker: Any, fresh_otel: None
) -> None:
    """The worker asks for the provider once per claim, not once at start."""
    worker = start_worker(task_paths=JOBS)
    before = client.queue_task("hp_count", n=1)
    assert before is not None
    wait_ready(dsn, [before], 15, worker)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    after = client.queue_task("hp_count", n=2)
    later_async = client.queue_task("async_add", a=1, b=2)
    assert after is not None and later_async is not None
    rows = wait_ready(dsn, [after, later_async], 15, worker)
    assert {r["status"] for r in rows.values()} == {states.SUCCESS}
    traced = {
        s.attributes.get("messaging.message.id")
        for s in exporter.get_finished_spans()
        if s.attributes
    }
    assert after in traced and later_async in traced
    assert before not in traced


@pytest.mark.parametrize(
    "meta_params",
    [
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "garbage", "tracestate": ""},
        {"traceparent": 12345, "tracestate": None},
    ],
)
def test_a_task_with_a_traceparent_but_no_provider_runs(
    dsn: str, client: TaskBackend, start_worker: Any, fresh_otel: None, meta_params: Any
) -> None:
    """A trace context in meta_params makes a span even without a provider (a non-recording
    one); whatever the stored context holds, the job runs (thread and async jobs)."""
    worker = start_worker(task_paths=JOBS)
    ids = [
        client.queue_task("hp_count", meta_params=meta_params, n=1),
        client.queue_task("async_add", meta_params=meta_params, a=1, b=2),
    ]
    rows = wait_ready(dsn, [i for i in ids if i], 15, worker)
    assert [r["status"] for r in rows.values()] == [states.SUCCESS] * 2


# == 2. client pools checked without a round trip ==========================================


@pytest.mark.slow
def test_pools_replace_terminated_connections_at_once(client: TaskBackend) -> None:
    """No sleep between the backends' exit and the next enqueue, several rounds, sync and
    async in one event loop; also a connection closed by ``idle_session_timeout``."""

    async def main() -> None:
        for n in range(2):
            assert await client.aqueue_task("add", a=n, b=0)
            assert client.queue_task("add", a=n, b=1)
            assert terminate_backends(client.dsn, "pgqueue-client") >= 1
            assert terminate_backends(client.dsn, "pgqueue-client-async") >= 1
            assert await client.aqueue_task("add", a=n, b=2)
            assert client.queue_task("add", a=n, b=3)
            assert client.queue_tasks("add", [{"a": n, "b": 4}]).queued
            assert (await client.aqueue_tasks("add", [{"a": n, "b": 5}])).queued

    run_async(main())
    assert count_tasks(client.dsn) == 12


@pytest.mark.slow
def test_pools_recover_after_a_full_server_restart(pg_server: Server, client: TaskBackend) -> None:
    """Every pooled connection dies with the server; the first enqueues after it come back
    succeed (sync and async), as does reading a task."""

    async def main() -> None:
        first = client.queue_task("add", a=1, b=1)
        assert first and await client.aqueue_task("add", a=1, b=2)
        pg_server.restart()
        assert client.queue_task("add", a=2, b=1)
        assert await client.aqueue_task("add", a=2, b=2)
        assert client.get_task(first) is not None
        assert (await client.aqueue_many([("add", {"a": 3, "b": 3})])).queued

    run_async(main())
    assert count_tasks(client.dsn) == 5


@pytest.mark.slow
def test_pools_replace_connections_the_server_closed_when_idle(
    dsn: str, client: TaskBackend
) -> None:
    """idle_session_timeout: the server closes a pooled connection that sat idle; the next
    checkout sees the input on its socket and gets a fresh connection (sync and async).
    (Below about one second the pool's own retry delay lets every replacement expire too,
    with or without a check query: that is psycopg_pool's backoff, not tested here.)"""
    database = exact_rows(dsn, "SELECT current_database() AS d")[0]["d"]
    sql(dsn, f"ALTER DATABASE {database} SET idle_session_timeout = '1500ms'")

    async def main() -> None:
        with TaskBackend(dsn, task_paths=JOBS) as backend:
            for n in range(2):
                assert backend.queue_task("add", a=n, b=0)
                assert await backend.aqueue_task("add", a=n, b=1)
                if not n:
                    await asyncio.sleep(1.8)

    try:
        run_async(main())
    finally:
        sql(dsn, f"ALTER DATABASE {database} RESET idle_session_timeout")
    assert count_tasks(dsn) == 4


@pytest.fixture
def high_fds() -> Iterator[None]:
    """Fill file descriptors up to 1100, so new sockets get numbers above FD_SETSIZE (1024),
    as in a server process with many open connections or files."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip("RLIMIT_NOFILE below 1200")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    fillers: list[int] = []
    try:
        while not fillers or fillers[-1] < 1100:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in fillers:
            os.close(fd)


def test_pool_check_works_on_a_socket_numbered_above_1024(dsn: str, high_fds: None) -> None:
    """check_pooled must not fail on a healthy connection whatever its socket's number
    (select.select refuses descriptors >= 1024; poll or selectors do not)."""
    with connect(dsn) as conn:
        assert conn.pgconn.socket >= 1024
        check_pooled(conn)  # a healthy idle connection: nothing to do

    async def check_async() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
            assert aconn.pgconn.socket >= 1024
            await acheck_pooled(aconn)

    run_async(check_async())
    with TaskBackend(dsn, task_paths=JOBS) as backend:
        assert backend.queue_task("add", a=1, b=2)


# == 4. claims: positional rows, async commit, one generic plan ============================


def test_two_workers_racing_on_one_queue_run_each_task_exactly_once(
    dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    ids = client.queue_tasks("hp_count", [{"n": n} for n in range(400)]).queued
    workers = [start_worker(task_paths=JOBS, backlog=8) for _ in range(2)]
    ids += client.queue_tasks("hp_count", [{"n": n} for n in range(400, 600)]).queued
    rows = wait_ready(dsn, ids, 40, workers[0])
    assert all(r["status"] == states.SUCCESS and r["attempts"] == 1 for r in rows.values())
    assert {RUN_COUNT[i] for i in ids} == {1}
    assert len({r["worker"] for r in rows.values()}) == 2  # both really claimed


def test_claims_follow_priority_across_queues_with_the_generic_plan(
    dsn: str, client: TaskBackend, start_worker: Any
) -> None:
    """backlog 1: one task per claim, more than psycopg's prepare threshold (5) claims, so
    the prepared generic plan serves most of them; order is priority across both queues,
    and tasks not due or of another queue are left alone."""
    client.queue_tasks("hp_order", [{"label": f"a{n}"} for n in range(4)], queue="qa")
    client.queue_tasks("hp_order", [{"label": f"b{n}"} for n in range(4)], queue="qb", priority=5)
    client.queue_tasks("hp_order", [{"label": "top"}], queue="qa", priority=50)
    client.queue_tasks("hp_order", [{"label": "neg"}], queue="qb", priority=-3)
    later = client.queue_tasks("hp_order", [{"label": "later"}], queue="qa", countdown=3600)
    other = client.queue_tasks("hp_order", [{"label": "other"}], queue="qc", priority=99)
    ORDER.clear()
    worker = start_worker(task_paths=JOBS, queues=["qa", "qb"], backlog=1)
    wait_until(lambda: len(ORDER) >= 10, 20, "ten tasks to run")
    time.sleep(0.3)
    assert worker.thread.is_alive()
    assert ORDER == [("qa", 50), *[("qb", 5)] * 4, *[("qa", 0)] * 4, ("qb", -3)]
    rows = task_rows(dsn, later.queued + other.queued)
    assert {r["status"] for r in rows.values()} == {states.QUEUED}


# == 5. bulk enqueue as one JSON document =================================================


def test_a_mixed_batch_stores_each_call_as_given(dsn: str, client: TaskBackend) -> None:
    """Jobs, queues, priorities, run_at/countdown/expiry per Call; meta_params given as one
    shared object, as equal but distinct dicts, and as a different dict in between; a
    duplicate of a non-overlapping job; job defaults (with_timeout: expiry 3600 s)."""
    at = datetime.now(UTC).replace(microsecond=123456) + timedelta(hours=1)
    shared = {"shared": True}
    calls: list[Any] = [
        Call("hp_echo", {"i": 0}, meta_params=shared, queue="q1", priority=3),
        Call("hp_echo", {"i": 1}, meta_params=shared, queue="q1", priority=3),
        Call("hp_echo", {"i": 2}, meta_params={"shared": True}, queue="q2", countdown=60),
        Call("hp_echo", {"i": 3}, meta_params={"other": 1}, queue="q1", priority=3),
        Call("hp_echo", {"i": 4}, meta_params=shared, queue="q1", priority=4),
        Call("add", {"a": 1, "b": 2}, run_at=at, expiry=timedelta(hours=2)),
        ("add", {"a": 3, "b": 4}),
        Call("exclusive", {"key": "k"}, priority=-2),
        Call("exclusive", {"key": "k"}, priority=7),
        Call("with_timeout", {}),
        Call("exclusive", {"key": "j"}, priority=9, expiry=at),
        Call("hp_echo", {"i": 5}, meta_params=None, queue="q1", priority=3),
        Call("hp_echo", {"i": 6}, queue="q1", priority=3, countdown=timedelta(minutes=5)),
    ]
    result = client.queue_many(calls)
    assert result.skipped == [8]
    ids = result.ids
    rows = task_rows(dsn, result.queued)

    def row(n: int) -> dict[str, Any]:
        task_id = ids[n]
        assert task_id is not None
        return rows[task_id]

    expect = {
        0: ("hp_echo", "q1", 3, {"i": 0}, {"shared": True}),
        1: ("hp_echo", "q1", 3, {"i": 1}, {"shared": True}),
        2: ("hp_echo", "q2", 0, {"i": 2}, {"shared": True}),
        3: ("hp_echo", "q1", 3, {"i": 3}, {"other": 1}),
        4: ("hp_echo", "q1", 4, {"i": 4}, {"shared": True}),
        5: ("add", "tasks", 0, {"a": 1, "b": 2}, {}),
        6: ("add", "tasks", 0, {"a": 3, "b": 4}, {}),
        7: ("exclusive", "tasks", -2, {"key": "k"}, {}),
        9: ("with_timeout", "tasks", 0, {}, {}),
        10: ("exclusive", "tasks", 9, {"key": "j"}, {}),
        11: ("hp_echo", "q1", 3, {"i": 5}, {}),
        12: ("hp_echo", "q1", 3, {"i": 6}, {}),
    }
    for n, (name, queue, priority, kwargs, meta) in expect.items():
        r = row(n)
        assert (r["name"], r["queue"], r["priority"], r["kwargs"], r["meta_params"]) == (
            name,
            queue,
            priority,
            kwargs,
            meta,
        ), n
        assert (r["lock_id"] is not None) == (name == "exclusive"), n

    def seconds(r: dict[str, Any], column: str) -> float:
        return float((r[column] - r["time_queued"]).total_seconds())

    assert seconds(row(2), "run_at") == pytest.approx(60, abs=1)
    assert seconds(row(12), "run_at") == pytest.approx(300, abs=1)
    assert row(5)["run_at"] == at
    assert seconds(row(5), "expiry") == pytest.approx(7200, abs=1)
    assert seconds(row(9), "expiry") == pytest.approx(3600, abs=1)
    assert row(10)["expiry"] == at
    for n in (0, 1, 3, 4, 6, 7, 11):
        assert row(n)["expiry"] is None and seconds(row(n), "run_at") < 1, n


def test_generated_calls_with_short_lived_meta_params_dicts_keep_their_own(
    dsn: str, client: TaskBackend
) -> None:
    """A generator making a fresh meta_params dict per Call: earlier dicts are freed while
    the batch is built, so their id() is reused by later ones."""

    def calls() -> Iterator[Call]:
        for n in range(300):
            meta = {"n": n // 3} if n % 7 else None
            yield Call("hp_echo", {"i": n}, meta_params=meta)

    result = client.queue_many(calls())
    rows = task_rows(dsn, result.queued)
    for n, task_id in enumerate(result.ids):
        assert task_id is not None
        expected = {"n": n // 3} if n % 7 else {}
        assert rows[task_id]["meta_params"] == expected, n
        assert rows[task_id]["kwargs"] == {"i": n}


def test_generated_calls_reusing_one_meta_params_dict_keep_each_state(
    dsn: str, client: TaskBackend
) -> None:
    """queue_many reads a generator lazily: a caller that updates one meta_params dict
    before yielding each Call got each state stored (per-call encoding before 0976a1f); the
    shared job defaults must not freeze the first state for all of them."""

    def calls() -> Iterator[Call]:
        meta: dict[str, Any] = {}
        for n in range(4):
            meta["step"] = n
            yield Call("hp_echo", {"i": n}, meta_params=meta)

    result = client.queue_many(calls())
    rows = task_rows(dsn, result.queued)
    assert [rows[i]["meta_params"] for i in result.queued] == [{"step": n} for n in range(4)]


def test_generated_calls_reusing_one_kwargs_dict_keep_each_state(
    dsn: str, client: TaskBackend
) -> None:
    """The same for kwargs: each Call's kwargs were encoded when the Call was read; the batch
    document, dumped after the whole generator ran, must not give every task the last
    state."""

    def calls() -> Iterator[Call]:
        kwargs: dict[str, Any] = {"b": 0}
        for n in range(4):
            kwargs["a"] = n
            yield Call("add", kwargs)

    result = client.queue_many(calls())
    rows = task_rows(dsn, result.queued)
    assert [rows[i]["kwargs"]["a"] for i in result.queued] == [0, 1, 2, 3]


def test_kwargs_given_as_any_mapping_are_accepted_in_bulk(dsn: str, client: TaskBackend) -> None:
    """kwargs are typed Mapping (Call.kwargs, queue_tasks' kwargs_list) and check_kwargs
    accepts any Mapping; a read-only mapping must be queued like a dict."""
    frozen = MappingProxyType({"a": 1, "b": 2})
    assert client.queue_tasks("add", [frozen]).queued
    assert client.queue_many([Call("add", frozen)]).queued
    assert count_tasks(dsn) == 2


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("priority", 1, True),
        ("priority", 1, 1.0),
        ("countdown", 1, True),
        ("expiry", 0, False),
    ],
)
def test_a_value_queue_task_refuses_is_refused_in_a_batch_after_an_equal_one(
    dsn: str, client: TaskBackend, field: str, good: Any, bad: Any
) -> None:
    """queue_task refuses a bool or float priority and a bool time; in a batch the same value
    must be refused even right after a Call whose value compares equal (1 == True == 1.0)."""
    with pytest.raises(ConfigurationError):
        client.queue_task("add", a=1, b=1, **{field: bad})
    with pytest.raises(ConfigurationError):
        client.queue_many(
            [
                Call("add", {"a": 1, "b": 2}, **{field: good}),
                Call("add", {"a": 1, "b": 3}, **{field: bad}),
            ]
        )
    assert count_tasks(dsn) == 0


def test_duplicates_inside_one_batch_and_across_batches(dsn: str, client: TaskBackend) -> None:
    """can_overlap=False: the first of equal kwargs (whatever their key order) is inserted,
    later ones and ones held by an earlier batch are skipped; ids stay in input order."""
    first = client.queue_many(
        [
            Call("exclusive", {"key": "a"}),
            Call("add", {"a": 1, "b": 1}),
            Call("exclusive", {"key": "b"}),
            Call("exclusive", {"key": "a"}),
            Call("exclusive", {"key": "c", "seconds": 0}),
            Call("exclusive", {"seconds": 0, "key": "c"}),
            Call("add", {"a": 1, "b": 1}),
        ]
    )
    assert first.skipped == [3, 5]
    second = client.queue_tasks(
        "exclusive", [{"seconds": 0, "key": "c"}, {"key": "d"}, {"key": "a"}, {"key": "d"}]
    )
    assert second.skipped == [0, 2, 3]
    rows = task_rows(dsn, first.queued + second.queued)
    kwargs = {i: rows[i]["kwargs"] for i in rows}
    assert [kwargs[i] for i in first.queued] == [
        {"key": "a"},
        {"a": 1, "b": 1},
        {"key": "b"},
        {"key": "c", "seconds": 0},
        {"a": 1, "b": 1},
    ]
    assert [kwargs[i] for i in second.queued] == [{"key": "d"}]


def test_the_first_of_two_duplicates_is_inserted_even_when_jsonb_normalises_them(
    dsn: str, client: TaskBackend
) -> None:
    """-0.0 and 0.0 (or 1e16 and 10**16) are one lock_id (jsonb prints them alike); the doc
    says the first in input order is inserted and the later one skipped."""
    result = client.queue_tasks(
        "exclusive", [{"key": "z", "seconds": 0.0}, {"key": "z", "seconds": -0.0}]
    )
    assert result.skipped == [1]
    result = client.queue_tasks(
        "exclusive", [{"key": "y", "seconds": 1e16}, {"key": "y", "seconds": 10**16}]
    )
    assert result.skipped == [1]


def test_nul_escapes_in_bulk(dsn: str, client: TaskBackend) -> None:
    """The 7 characters \\u0000 (and after an escaped backslash) are text and stored as
    given; a real NUL anywhere (value, key, meta_params, after a backslash) refuses the
    whole batch before anything is sent."""
    texts = ["\\u0000", "a\\\\u0000", "\\\\\\u0000z", "\\u00000", "\\u0000" * 3]
    result = client.queue_tasks("hp_echo", [{"s": t} for t in texts], meta_params={"m": texts[0]})
    rows = task_rows(dsn, result.queued)
    assert [rows[i]["kwargs"]["s"] for i in result.queued] == texts
    assert {rows[i]["meta_params"]["m"] for i in result.queued} == {texts[0]}
    bad_batches: list[list[Any]] = [
        [Call("hp_echo", {"s": "ok"}), Call("hp_echo", {"s": "x\x00y"})],
        [Call("hp_echo", {"k\x00": 1})],
        [Call("hp_echo", {"s": "\\\x00"})],
        [Call("hp_echo", {"s": "ok"}), Call("hp_echo", {"s": "ok"}, meta_params={"m": "\x00"})],
        [Call("hp_echo", {"deep": [{"x": ["\x00"]}]})],
    ]
    for batch in bad_batches:
        with pytest.raises(SerializationError):
            client.queue_many(batch)
    assert count_tasks(dsn) == len(texts)


def test_nan_infinity_and_lone_surrogates_refuse_the_batch(dsn: str, client: TaskBackend) -> None:
    for bad in (float("nan"), float("inf"), -float("inf"), "\ud800", "a\udfffb", {"\ud83d": 1}):
        with pytest.raises(SerializationError):
            client.queue_tasks("hp_echo", [{"ok": 1}, {"v": bad}])
        with pytest.raises(SerializationError):
            client.queue_many([Call("hp_echo", {"ok": 1}, meta_params={"v": bad})])
    assert count_tasks(dsn) == 0
    paired = client.queue_tasks("hp_echo", [{"v": "\ud83d\ude00"}]).queued
    assert task_rows(dsn, paired)[paired[0]]["kwargs"] == {"v": "😀"}


def test_async_bulk_variants(dsn: str, client: TaskBackend) -> None:
    async def main() -> None:
        many = await client.aqueue_many(
            [
                Call("exclusive", {"key": "a"}),
                ("add", {"a": 1, "b": 2}),
                Call("exclusive", {"key": "a"}),
                Call("hp_echo", ODD_KWARGS, meta_params={"x": "😀"}, queue="q9", priority=4),
            ]
        )
        assert many.skipped == [2]
        tasks = await client.aqueue_tasks(
            "exclusive", [{"key": "a"}, {"key": "b"}, {"key": "b"}], countdown=5
        )
        assert tasks.skipped == [0, 2]
        assert (await client.aqueue_many([])).ids == []
        echo = await client.aget_task(many.ids[3])  # type: ignore[arg-type]
        assert echo is not None and echo.kwargs == ODD_KWARGS and echo.queue == "q9"

    run_async(main())
    assert count_tasks(dsn) == 4


def test_transactional_bulk_on_psycopg_and_sqlalchemy_connections(
    dsn: str, client: TaskBackend
) -> None:
    """connection=: the batch exists only if the caller commits; a refused batch leaves the
    caller's transaction usable."""
    with psycopg.connect(dsn) as conn:
        client.queue_tasks("add", [{"a": 1, "b": n} for n in range(3)], connection=conn)
        assert count_tasks(dsn) == 0
        conn.rollback()
        with pytest.raises(SerializationError):
            client.queue_many([Call("add", {"a": float("nan"), "b": 1})], connection=conn)
        result = client.queue_many(
            [Call("exclusive", {"key": "t"}), Call("exclusive", {"key": "t"})], connection=conn
        )
        assert result.skipped == [1]
        conn.commit()
    assert count_tasks(dsn) == 1
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=NullPool
    )
    with Session(engine) as session:
        client.queue_tasks("add", [{"a": 2, "b": n} for n in range(4)], connection=session)
        session.rollback()
        result = client.queue_tasks(
            "add", [{"a": 3, "b": n} for n in range(5)], connection=session, countdown=1
        )
        assert len(result.queued) == 5
        session.commit()
    engine.dispose()
    assert count_tasks(dsn) == 6

    async def main() -> None:
        aconn = await psycopg.AsyncConnection.connect(dsn)
        async with aconn:
            await client.aqueue_many([("add", {"a": 9, "b": 9})], connection=aconn)
            await aconn.rollback()
            await client.aqueue_tasks("add", [{"a": 8, "b": 8}], connection=aconn)
            await aconn.commit()

    run_async(main())
    assert count_tasks(dsn) == 7


def test_run_at_with_a_sub_second_utc_offset_is_accepted_in_bulk_as_alone(
    dsn: str, client: TaskBackend
) -> None:
    """Python allows UTC offsets with microseconds; psycopg sent such a run_at fine, and
    queue_task still does. The batch document carries isoformat() text instead."""
    odd = timezone(timedelta(hours=1, seconds=1, microseconds=500000))
    at = datetime(2030, 1, 1, 12, 0, tzinfo=odd)
    assert client.queue_task("add", run_at=at, a=1, b=1)
    assert client.queue_tasks("add", [{"a": 1, "b": 2}], run_at=at).queued
    rows = exact_rows(dsn, "SELECT run_at FROM pgqueue.task")
    assert [r["run_at"] for r in rows] == [at, at]


# == durability of claims ==================================================================


@pytest.fixture
def slow_wal_writer(pg_server: Server) -> Iterator[Server]:
    """The WAL writer flushes asynchronous commits every 10 s instead of 0.2 s, so that a
    claim is reliably still unflushed when the server crashes right after it."""
    if pg_server.embedded is None:
        pytest.skip("crashing the server needs the embedded server (PGQUEUE_TEST_DSN set)")
    sql(pg_server.admin_dsn, "ALTER SYSTEM SET wal_writer_delay = '10s'")
    sql(pg_server.admin_dsn, "SELECT pg_reload_conf()")
    time.sleep(0.5)  # the WAL writer reads it at its next wake-up (within 0.2 s)
    try:
        yield pg_server
    finally:
        sql(pg_server.admin_dsn, "ALTER SYSTEM RESET wal_writer_delay")
        sql(pg_server.admin_dsn, "SELECT pg_reload_conf()")


def _crash(server: Server) -> None:
    """Kill PostgreSQL without a checkpoint (immediate mode) and start it again: crash
    recovery replays what reached the WAL files, nothing else."""
    assert server.embedded is not None
    server.embedded._pg_ctl(["-w", "-m", "immediate", "restart"])
    server.embedded._refresh()


def _row_after_restart(dsn: str, task_id: str) -> dict[str, Any]:
    rows = exact_rows(
        dsn,
        "SELECT status, attempts, worker, time_started < pg_postmaster_start_time() AS old_claim "
        "FROM pgqueue.task WHERE id = %s",
        (task_id,),
    )
    return rows[0]


def test_a_durable_outcome_or_child_enqueue_makes_the_claim_durable(
    dsn: str, slow_wal_writer: Server, client: TaskBackend, start_worker: Any
) -> None:
    """The README's argument: the WAL is flushed in order, so a task that finished before a
    crash stays finished, and a running task whose job queued a child task (a durable
    commit on another connection) keeps its claim: it is neither run again nor rescued."""
    worker = start_worker(task_paths=JOBS, lease=60.0, backlog=4)
    done = client.queue_task("hp_count", n=7)
    assert done is not None
    wait_ready(dsn, [done], 10, worker)
    key = f"child-{uuid.uuid4().hex}"
    parent = client.queue_task("hp_hold", key=key, child=True)
    assert parent is not None
    wait_until(lambda: HELD[key], 10, "the parent to run")
    _crash(slow_wal_writer)
    try:
        assert task_rows(dsn, [done])[done]["status"] == states.SUCCESS
        row = _row_after_restart(dsn, parent)
        assert (row["status"], row["attempts"], row["old_claim"]) == (states.STARTED, 1, True)
        assert exact_rows(dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE name = 'add'") == [
            {"n": 1}
        ]
    finally:
        for event in RELEASE[key]:
            event.set()
    rows = wait_ready(dsn, [parent], 30, worker)
    assert (rows[parent]["status"], rows[parent]["result"]) == (states.SUCCESS, 1)
    assert HELD[key] == [1]


def _wake_wal_writer(server: Server) -> None:
    """An asynchronous commit: a hibernating WAL writer wakes up and flushes it at once, then
    sleeps wal_writer_delay (10 s) again; a WAL writer awake since the reload sleeps until
    10 s after it. Either way the next seconds are a window in which an asynchronous commit
    reaches neither the WAL files nor the disk unless some session flushes it."""
    with connect(server.admin_dsn) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SELECT txid_current()")
    time.sleep(0.2)


@pytest.mark.slow
def test_a_claim_survives_a_crash_right_after_it(
    dsn: str, slow_wal_writer: Server, client: TaskBackend, start_worker: Any
) -> None:
    """Claims commit durably. With ``synchronous_commit = off`` on the claimer (tried, and
    dropped for this), a crash forgot the latest claim: the same worker claimed the task
    again with the same attempt number, ran it twice at once, and the fence took the first
    run's outcome. Here the server crashes while the first run still holds the task (a
    window in which an asynchronous commit would not have reached the disk); after the
    restart the claim is still there and the task runs exactly once."""
    worker = start_worker(task_paths=JOBS, lease=60.0, backlog=4)
    key = f"claimed-{uuid.uuid4().hex}"
    _wake_wal_writer(slow_wal_writer)
    task_id = client.queue_task("hp_hold", key=key)
    assert task_id is not None
    wait_until(lambda: HELD[key], 10, "the first run", interval=0.002)
    _crash(slow_wal_writer)
    try:
        after = _row_after_restart(dsn, task_id)
        assert (after["status"], after["attempts"], after["old_claim"]) == (
            states.STARTED,
            1,
            True,
        ), after
        time.sleep(1.0)  # a worker that lost the claim would have claimed it again by now
        assert HELD[key] == [1]
    finally:
        for event in RELEASE[key]:
            event.set()
    rows = wait_ready(dsn, [task_id], 30, worker)
    assert (rows[task_id]["status"], rows[task_id]["result"]) == (states.SUCCESS, 1)
    assert HELD[key] == [1]

"""The flow-control scenario (issue 13): what limits cost, side by side in one run.

Every figure is measured against its unlimited twin right before or after it, A B A B, so the
ratios hold on a busy machine:

* **claim**: claims/s of the claim statement alone (``concurrency`` tasks per claim, rolled back
  so every claim sees the same ``tasks`` queued), on a connection set up as the worker's
  claimer: unlimited tasks through ``CLAIM_UNLIMITED_TASKS`` (what a worker without limits
  runs) against tasks of a job whose limit never binds, and tasks of 1,000 keys limited to 2
  each, through ``CLAIM_TASKS``;
* **drain**: jobs/s of one in-process worker draining ``tasks`` no-op tasks: unlimited, with a
  limit configured that never binds (target: >= 90% of unlimited) and spread over 1,000 keys
  each limited to 2 at once (target: >= 70%);
* **enqueue**: ``queue_task`` one at a time, with a ``limit_key`` against without (target:
  within 5%).
"""

from __future__ import annotations

from typing import Any

from pgqueue import Call, TaskBackend
from pgqueue._db import connect
from pgqueue._schema import migrate
from pgqueue._store import Store
from pgqueue.worker import claim_session

from . import bench_pgqueue
from .common import Figures, Sizes, analyze, log, rate, timer

#: The limited keys of the 1,000-keys figures.
KEYS = 1_000

#: (figure, what it is compared with, least ratio wanted; None: no target)
TARGETS = (
    ("claim, limit not binding", "claim, unlimited", None),
    ("claim, 1,000 keys limited to 2", "claim, unlimited", None),
    ("drain, limit not binding", "drain, unlimited", 0.9),
    ("drain, 1,000 keys limited to 2", "drain, unlimited", 0.7),
    ("enqueue one, with limit_key", "enqueue one, no limit", 0.95),
)


def _calls(kind: str, count: int) -> list[Call]:
    if kind == "unlimited":
        return [Call("noop")] * count
    if kind == "loose":
        return [Call("noop_loose")] * count
    return [Call("noop_per_key", kwargs={"key": f"k{i % KEYS}"}) for i in range(count)]


def _fill(dsn: str, backend: TaskBackend, kind: str, count: int) -> None:
    with connect(dsn) as conn:
        conn.execute("DELETE FROM pgqueue.task")
        if conn.execute("SELECT to_regclass('pgqueue.flow_turn') AS t").fetchone()["t"]:
            conn.execute("DELETE FROM pgqueue.flow_turn")  # the round-robin cursor
    calls = _calls(kind, count)
    for start in range(0, count, 1_000):
        backend.queue_many(calls[start : start + 1_000])
    analyze(dsn)


def claim_rate(dsn: str, kind: str, claims: int, limit: int) -> float:
    """Claims/s of ``claims`` claims of ``limit`` tasks, each rolled back."""
    store = Store("pgqueue")
    args: dict[str, Any] = {
        "queues": ["tasks"],
        "jobs": list(bench_pgqueue.registry()),
        "limit": limit,
        "worker": "bench",
    }
    op = store.claim_unlimited_tasks(**args) if kind == "unlimited" else store.claim_tasks(**args)
    with connect(dsn, autocommit=False) as conn:
        claim_session(conn)
        conn.commit()
        for _ in range(20):  # warm up: the prepared statement's generic plan
            conn.execute(op.sql, op.params).fetchall()
            conn.rollback()
        with timer() as elapsed:
            for _ in range(claims):
                rows = conn.execute(op.sql, op.params).fetchall()
                conn.rollback()
                if len(rows) != limit:
                    raise RuntimeError(f"claim of {kind} tasks started {len(rows)}, not {limit}")
    return rate(claims, elapsed())


def enqueue_rate(backend: TaskBackend, kind: str, count: int) -> float:
    """Jobs/s of ``count`` single ``queue_task`` calls."""
    with timer() as elapsed:
        if kind == "unlimited":
            for _ in range(count):
                backend.queue_task("noop")
        else:
            for i in range(count):
                backend.queue_task("noop_per_key", key=f"k{i % KEYS}")
    return rate(count, elapsed())


def run(dsn: str, sizes: Sizes, tasks: int) -> Figures:
    """``sizes.repeat`` rounds of every figure, each round A B A B."""
    migrate(dsn, "pgqueue")
    result = Figures(tasks)
    claims = max(100, tasks // 10)
    with TaskBackend(dsn, registry=bench_pgqueue.registry()) as backend:
        backend.queue_task("noop")  # open the pool
        for attempt in range(sizes.repeat):
            log(f"flow: run {attempt + 1}/{sizes.repeat}")
            for kind, figure in (
                ("unlimited", "claim, unlimited"),
                ("loose", "claim, limit not binding"),
                ("keys", "claim, 1,000 keys limited to 2"),
            ):
                _fill(dsn, backend, kind, tasks)
                result.add(figure, claim_rate(dsn, kind, claims, sizes.concurrency))
            for kind, figure in (
                ("unlimited", "drain, unlimited"),
                ("loose", "drain, limit not binding"),
                ("unlimited", "drain, unlimited"),
                ("keys", "drain, 1,000 keys limited to 2"),
            ):
                _fill(dsn, backend, kind, tasks)
                drained = bench_pgqueue.drain(dsn, tasks, sizes.concurrency)
                result.add(figure, drained)
            for kind, figure in (
                ("unlimited", "enqueue one, no limit"),
                ("keys", "enqueue one, with limit_key"),
            ) * 2:
                result.add(figure, enqueue_rate(backend, kind, sizes.single))
        with connect(dsn) as conn:
            conn.execute("DELETE FROM pgqueue.task")
    return result

"""Queues and priorities: defaults from the job, overrides per call, claim order across
several queues (higher priority first, then FIFO), and claims that stay index-driven."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import pgqueue
from pgqueue import Call
from pgqueue._db import connect
from tests.support.fixtures import run_cli, sql

JOBS = ["tests.support.jobs", "tests.support.child_jobs"]


def claim(dsn: str, backend: pgqueue.TaskBackend, queues: list[str], limit: int) -> list[Any]:
    with connect(dsn) as conn:
        op = backend.store.claim_tasks(
            queues=queues, jobs=["add", "send_mail"], limit=limit, worker="t"
        )
        rows = conn.execute(op.sql, op.params).fetchall()
    return rows


def test_job_defaults_and_call_overrides(dsn: str) -> None:
    with pgqueue.TaskBackend(dsn, task_paths=JOBS) as backend:
        default = backend.get_task(backend.queue_task("send_mail", to="a") or "")
        override = backend.get_task(
            backend.queue_task("send_mail", queue="urgent", priority=9, to="b") or ""
        )
        report = backend.get_task(backend.queue_task("report", n=1) or "")
        plain = backend.get_task(backend.queue_task("add", a=1, b=2) or "")
        info = dict(backend.job_list(["send_mail", "report"]))
    assert default and (default.queue, default.priority) == ("mail", 5)
    assert override and (override.queue, override.priority) == ("urgent", 9)
    assert report and (report.queue, report.priority) == ("reports", -1)
    assert plain and (plain.queue, plain.priority) == ("tasks", 0)
    assert (info["send_mail"]["queue"], info["send_mail"]["priority"]) == ("mail", 5)


def test_claim_order_is_priority_then_fifo_across_queues(
    dsn: str, backend: pgqueue.TaskBackend
) -> None:
    calls = [
        Call("add", {"a": 1, "b": 0}, queue="a", priority=0),
        Call("add", {"a": 2, "b": 0}, queue="b", priority=5),
        Call("add", {"a": 3, "b": 0}, queue="a", priority=5),
        Call("add", {"a": 4, "b": 0}, queue="b", priority=0),
        Call("add", {"a": 5, "b": 0}, queue="c", priority=99),  # not consumed
        Call("add", {"a": 6, "b": 0}, queue="a", priority=-3),
        Call("add", {"a": 7, "b": 0}, queue="b", priority=5),
    ]
    # One statement gives one time_queued to all; queue them one by one for FIFO to mean
    # something, with run_at strictly increasing.
    for call in calls:
        backend.queue_many([call])
    order = [claim(dsn, backend, ["a", "b"], 1) for _ in range(7)]
    claimed = [rows[0]["kwargs"]["a"] for rows in order if rows]
    assert claimed == [2, 3, 7, 1, 4, 6]
    assert order[-1] == []  # queue c was never claimed


def test_claim_batch_takes_the_best_of_all_queues(dsn: str, backend: pgqueue.TaskBackend) -> None:
    for queue, priority in [("a", 1), ("a", 1), ("a", 1), ("b", 3), ("b", 2), ("c", 9)]:
        backend.queue_task("add", queue=queue, priority=priority, a=priority, b=0)
    rows = claim(dsn, backend, ["a", "b"], 3)
    assert sorted(row["priority"] for row in rows) == [1, 2, 3]
    assert {row["status"] for row in rows} == {pgqueue.states.STARTED}


def test_worker_on_two_queues_runs_higher_priority_first(dsn: str, start_worker: Any) -> None:
    """``Worker(queues=[...])`` (``pgqueue-worker --queues a,b``) with one slot."""
    with pgqueue.TaskBackend(dsn, task_paths=JOBS) as backend:
        low = backend.queue_task("add", queue="a", priority=0, a=1, b=1)
        mail = backend.queue_task("send_mail", to="x")  # queue mail, priority 5
        high = backend.queue_task("add", queue="a", priority=10, a=2, b=2)
        other = backend.queue_task("add", queue="elsewhere", priority=100, a=3, b=3)
        start_worker(queues=["a", "mail"], backlog=1, task_paths=JOBS, poll_timeout=0.5)
        done = [backend.wait_for_task(tid or "", timeout=20) for tid in (low, mail, high)]
        started = sorted(done, key=lambda task: task.time_started or 0)
        assert [task.id for task in started] == [high, mail, low]
        remaining = backend.get_task(other or "")
        assert remaining and remaining.status == pgqueue.states.QUEUED


def _scans_of_task(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan] if plan.get("Relation Name") == "task" else []
    for child in plan.get("Plans", []):
        found += _scans_of_task(child)
    return found


@pytest.mark.slow
def test_claims_stay_index_driven_with_a_large_backlog(
    dsn: str, backend: pgqueue.TaskBackend
) -> None:
    """With 20,000 claimable tasks over three queues, claiming 5 from two queues reads the
    partial index task_claimable_job in claim order and touches a handful of rows, not the
    backlog."""
    for queue in ("a", "b", "c"):
        backend.queue_tasks("add", [{"a": n, "b": 0} for n in range(6700)], queue=queue, priority=0)
    backend.queue_tasks("add", [{"a": -1, "b": 0}], queue="b", priority=7)
    sql(dsn, "ANALYZE pgqueue.task")
    for queues in (["a"], ["a", "b"]):
        with connect(dsn, autocommit=False) as conn:
            op = backend.store.claim_tasks(queues=queues, jobs=["add"], limit=5, worker="explain")
            query = "EXPLAIN (ANALYZE, FORMAT JSON) " + op.sql
            plan_json = conn.execute(query, op.params).fetchone()
            conn.rollback()
        assert plan_json is not None
        raw = plan_json["QUERY PLAN"]
        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        # The scans that look for claimable rows (the UPDATE then finds each by primary key).
        scans = [
            node
            for node in _scans_of_task(plan)
            if "Scan" in node["Node Type"] and node.get("Index Name") != "task_pkey"
        ]
        assert scans, plan
        rows_read = sum(s["Actual Rows"] * s["Actual Loops"] for s in scans)
        assert rows_read <= 5 * len(queues) + 5, json.dumps(plan, indent=1)[:3000]
        assert "task_claimable_job" in {s.get("Index Name") for s in scans}
        assert not any(s["Node Type"] == "Seq Scan" for s in scans)
    assert uuid.UUID(str(claim(dsn, backend, ["a", "b"], 1)[0]["id"]))


def test_worker_cli_consumes_the_queues_given(dsn: str) -> None:
    """``pgqueue-worker --queues a,mail --backlog 1 --burst``: both queues drained in
    priority order, another queue untouched."""
    with pgqueue.TaskBackend(dsn, task_paths=JOBS) as backend:
        low = backend.queue_task("add", queue="a", priority=-1, a=1, b=1)
        mail = backend.queue_task("send_mail", to="x")
        high = backend.queue_task("add", queue="a", priority=7, a=2, b=2)
        other = backend.queue_task("add", queue="b", priority=100, a=3, b=3)
        paths = ",".join(JOBS)
        command = ["pgqueue-worker", "--task-paths", paths, "--queues", "a,mail"]
        done = run_cli([*command, "--backlog", "1", "--burst"], dsn)
        assert done.returncode == 0, done.stderr
        tasks = {t.id: t for t in backend.get_tasks(i or "" for i in (low, mail, high, other))}
    finished = sorted((t for t in tasks.values() if t.time_started), key=lambda t: t.time_started)
    assert [t.id for t in finished] == [high, mail, low]
    assert all(t.status == pgqueue.states.SUCCESS for t in finished)
    assert tasks[other or ""].status == pgqueue.states.QUEUED

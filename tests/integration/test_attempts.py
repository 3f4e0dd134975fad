"""The attempt history of revision pgqueue_0008_dashboard: what a retry or the end of a task
waiting to be retried would overwrite is kept in ``task_attempt``; a first success keeps
nothing there."""

from __future__ import annotations

import psycopg
import pytest

from pgqueue import TaskBackend
from pgqueue._ops import Operations
from tests.support.fixtures import sql

OPS_JOBS = "tests.support.ops_jobs"


def test_revoking_a_task_waiting_for_its_retry_keeps_the_failed_attempt(dsn: str) -> None:
    sql(
        dsn,
        "INSERT INTO pgqueue.task (name, kwargs, status, attempts, max_retries, error, "
        "traceback, worker, time_started, run_at) VALUES ('double', '{\"n\": 1}', 4, 1, 3, "
        "'ValueError: first', 'Traceback: first', 'w1', now(), now() + interval '1 hour')",
    )
    task_id = sql(dsn, "SELECT id::text AS id FROM pgqueue.task")[0]["id"]
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as backend:
        ops = Operations(backend)
        ops.revoke(task_id, actor="tester")
        ops.retry(task_id, actor="tester")
        history = ops.attempts(task_id)
        trail = ops.actions()
    assert [(a["attempt"], a["state"], a["error"], a["worker"]) for a in history] == [
        (1, "RETRY", "ValueError: first", "w1"),
        (1, "REVOKED", "revoked by an operator", "w1"),
    ]
    assert [(a["actor"], a["action"], a["task_id"]) for a in trail] == [
        ("tester", "retry", task_id),
        ("tester", "revoke", task_id),
    ]


def test_a_first_success_writes_no_history(dsn: str, start_worker: object) -> None:
    start_worker(task_paths=[OPS_JOBS], poll_timeout=1.0)  # type: ignore[operator]
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        client.wait_for_task(str(client.queue_task("double", n=2)), timeout=30)
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task_attempt")[0]["n"] == 0


def test_an_action_whose_audit_line_cannot_be_written_changes_nothing(dsn: str) -> None:
    """An operator action and its audit line commit together (the pooled connections
    autocommit, so each action opens a transaction of its own)."""
    sql(
        dsn,
        "INSERT INTO pgqueue.task (name, kwargs, status, error, time_ended) "
        "SELECT 'double', jsonb_build_object('n', n), 2, 'ValueError', now() "
        "FROM generate_series(1, 3) AS n",
    )
    ids = [r["id"] for r in sql(dsn, "SELECT id::text AS id FROM pgqueue.task ORDER BY id")]
    sql(dsn, "ALTER TABLE pgqueue.operator_action ADD CONSTRAINT refuse CHECK (false) NOT VALID")
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as backend:
        ops = Operations(backend)
        for action in (
            lambda: ops.retry(ids[0], actor="tester"),
            lambda: ops.grant_attempts(ids[0], 2, actor="tester"),
            lambda: ops.retry_failed(actor="tester"),
            lambda: ops.revoke_many(ids, actor="tester"),
        ):
            with pytest.raises(psycopg.errors.CheckViolation):
                action()
    states = sql(dsn, "SELECT DISTINCT status FROM pgqueue.task")
    assert states == [{"status": 2}]

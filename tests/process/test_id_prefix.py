"""Unique id prefixes (the 8 characters every log line shows) name a task in ``pgqueue show``,
``revoke`` and ``retry`` (and the dashboard, tests/test_dashboard.py); an ambiguous prefix is a
usage error that counts the candidates, and nothing changes."""

from __future__ import annotations

import uuid

from pgqueue import TaskBackend
from tests.support.fixtures import run_cli, sql

OPS_JOBS = "tests.support.ops_jobs"


def insert_ids(dsn: str, ids: list[str]) -> None:
    for task_id in ids:
        sql(
            dsn,
            "INSERT INTO pgqueue.task (id, name, queue, kwargs) "
            "VALUES (%s::uuid, 'double', 'tasks', '{\"n\": 1}')",
            (task_id,),
        )


def test_show_revoke_retry_accept_a_unique_prefix(dsn: str) -> None:
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        task_id = str(client.queue_task("double", n=1))
    prefix = task_id[:8]
    shown = run_cli(["pgqueue", "show", prefix, "--json"], dsn)
    assert shown.returncode == 0, shown.stderr
    assert task_id in shown.stdout
    revoked = run_cli(["pgqueue", "revoke", prefix.upper()], dsn)
    assert revoked.returncode == 0, revoked.stderr
    assert sql(dsn, "SELECT status FROM pgqueue.task")[0]["status"] == 3
    retried = run_cli(["pgqueue", "retry", task_id[:13]], dsn)  # with its dash
    assert retried.returncode == 0, retried.stderr
    assert sql(dsn, "SELECT status FROM pgqueue.task")[0]["status"] == 6


def test_an_ambiguous_prefix_counts_the_candidates_and_changes_nothing(dsn: str) -> None:
    ids = [str(uuid.UUID("abcdef01" + f"{n:024x}")) for n in range(3)]
    insert_ids(dsn, ids)
    done = run_cli(["pgqueue", "revoke", "abcdef01"], dsn)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: 3 tasks have ids starting with abcdef01"), done.stderr
    assert "Traceback" not in done.stderr
    assert {r["status"] for r in sql(dsn, "SELECT status FROM pgqueue.task")} == {6}
    unknown = run_cli(["pgqueue", "show", "0123abcd"], dsn)
    assert unknown.returncode != 0
    assert "no task id starts with 0123abcd" in unknown.stderr
    too_short = run_cli(["pgqueue", "show", "abc"], dsn)
    assert too_short.returncode == 2
    assert "is not a task id" in too_short.stderr

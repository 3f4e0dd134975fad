"""Schema: migrations, the start-up check, SQL readability, bad DSNs (the core issue)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

import pgqueue
from pgqueue._errors import ConnectionFailed, SchemaError
from pgqueue._schema import SCHEMA_REVISION, head_revision
from tests.support.fixtures import TEST_JOBS, bin_path, cli_env, run_cli, sql


def test_schema_revision_constant_is_the_alembic_head() -> None:
    assert head_revision() == SCHEMA_REVISION


def test_every_column_of_every_table_is_commented(dsn: str) -> None:
    missing = sql(
        dsn,
        "SELECT c.relname, a.attname FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'pgqueue' AND c.relkind IN ('r', 'v') AND a.attnum > 0 "
        "AND NOT a.attisdropped AND c.relname <> 'alembic_version' "
        "AND col_description(c.oid, a.attnum) IS NULL",
    )
    assert missing == []


def test_states_are_readable_in_sql(dsn: str) -> None:
    rows = sql(dsn, "SELECT code, name FROM pgqueue.state ORDER BY code DESC")
    assert [(r["code"], r["name"]) for r in rows] == [
        (6, "QUEUED"),
        (5, "STARTED"),
        (4, "RETRY"),
        (3, "REVOKED"),
        (2, "FAILURE"),
        (1, "SUCCESS"),
    ]


def test_partial_indexes_exist(dsn: str) -> None:
    indexes = {
        r["indexname"]: r["indexdef"]
        for r in sql(dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'pgqueue'")
    }
    assert "UNIQUE" in indexes["task_lock_id_live"]
    assert "WHERE (status = ANY (ARRAY[4, 5, 6]))" in indexes["task_lock_id_live"]
    # Workflows (pgqueue_0007): a task waiting for parents is not claimable, not in the index.
    # Per queue and job (pgqueue_0014, F33): a claim never reads another job's backlog; the
    # index per queue alone is gone, so each write maintains one claim index.
    claimable = indexes["task_claimable_job"]
    assert "(queue, name, priority DESC, run_at, id)" in claimable
    assert "WHERE ((status = ANY (ARRAY[4, 6])) AND (waiting_on = 0))" in claimable
    assert "task_claimable" not in indexes


@pytest.mark.slow
def test_concurrent_migrations_do_not_race(empty_dsn: str) -> None:
    procs = [
        subprocess.Popen(
            [bin_path("pgqueue"), "migrate"],
            env=cli_env(empty_dsn),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert sql(empty_dsn, "SELECT count(*) AS n FROM pgqueue.schema_version")[0]["n"] >= 1


def test_worker_refuses_an_unmigrated_database(empty_dsn: str) -> None:
    with pytest.raises(SchemaError, match="pgqueue migrate"):
        pgqueue.Worker(empty_dsn, [TEST_JOBS]).run()
    done = run_cli(["pgqueue-worker", "--task-paths", TEST_JOBS, "--burst"], empty_dsn)
    assert done.returncode == 4
    assert "pgqueue migrate" in done.stderr and "Traceback" not in done.stderr


def test_worker_refuses_an_older_schema(dsn: str) -> None:
    sql(dsn, "DELETE FROM pgqueue.schema_version WHERE revision = %s", (SCHEMA_REVISION,))
    with pytest.raises(SchemaError, match="older than this pgqueue needs"):
        pgqueue.Worker(dsn, [TEST_JOBS]).run()


def test_queue_task_on_an_unmigrated_database_says_what_to_do(empty_dsn: str) -> None:
    with (
        pgqueue.TaskBackend(empty_dsn, [TEST_JOBS]) as client,
        pytest.raises(SchemaError, match="pgqueue migrate"),
    ):
        client.queue_task("add", a=1, b=2)


def test_bad_dsn_is_a_clear_error_without_the_password() -> None:
    dsn = "postgresql://someone:s3cret@127.0.0.1:1/nowhere"
    with pgqueue.TaskBackend(dsn, [TEST_JOBS]) as client, pytest.raises(ConnectionFailed) as info:
        client.queue_task("add", a=1, b=2)
    assert "cannot connect" in str(info.value) and "s3cret" not in str(info.value)
    done = run_cli(["pgqueue-worker", "--task-paths", TEST_JOBS, "--dsn", dsn], None)
    assert done.returncode == 3
    assert "cannot connect" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr


@pytest.mark.slow
def test_malformed_dsn_and_missing_dsn_are_usage_errors() -> None:
    done = run_cli(["pgqueue-worker", "--task-paths", TEST_JOBS, "--dsn", "host=x port"], None)
    assert done.returncode == 2 and "invalid DSN" in done.stderr
    done = run_cli(["pgqueue-worker", "--task-paths", TEST_JOBS], None)
    assert done.returncode == 2 and "PGQUEUE_DSN" in done.stderr


def test_unknown_task_path_is_a_usage_error(dsn: str) -> None:
    done = run_cli(["pgqueue-worker", "--task-paths", "no.such.module", "--burst"], dsn)
    assert done.returncode == 2 and "cannot import task path 'no.such.module'" in done.stderr


def test_pgqueue_worker_command_runs_real_jobs(backend: pgqueue.TaskBackend) -> None:
    ids = [backend.queue_task("add", a=i, b=i) for i in range(20)] + [backend.queue_task("fail")]
    done = run_cli(
        ["pgqueue-worker", "--task-paths", TEST_JOBS, "--burst", "--backlog", "3"],
        backend.dsn,
    )
    assert done.returncode == 0, done.stderr
    tasks = {t.id: t for t in backend.get_tasks([i for i in ids if i])}
    assert [tasks[i].result for i in ids[:20] if i] == [2 * i for i in range(20)]
    assert tasks[ids[-1] or ""].status == pgqueue.states.FAILURE
    # INFO: one summary line (the run is shorter than --log-summary-every) and a line per
    # failure; no line per start or success.
    summary = [line for line in done.stderr.splitlines() if " runs ended (" in line]
    assert len(summary) == 1 and "21 runs ended (SUCCESS 20, FAILURE 1)" in summary[0]
    assert " INFO " in summary[0] and "/s, mean run " in summary[0]
    assert " STARTED at " not in done.stderr and " SUCCESS at " not in done.stderr
    assert done.stderr.count(" FAILURE at ") == 1


def test_worker_debug_logs_a_line_per_task_start_and_finish(
    backend: pgqueue.TaskBackend,
) -> None:
    """--log-level DEBUG: one line per start and per finish, written with nice_task_message."""
    for i in range(5):
        backend.queue_task("add", a=i, b=i)
    backend.queue_task("fail")
    done = run_cli(
        ["pgqueue-worker", "--task-paths", TEST_JOBS, "--burst", "--log-level", "DEBUG"],
        backend.dsn,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(" STARTED at ") == 6
    assert done.stderr.count(" SUCCESS at ") == 5 and done.stderr.count(" FAILURE at ") == 1
    assert "6 runs ended (SUCCESS 5, FAILURE 1)" in done.stderr


def test_worker_max_tasks_command(backend: pgqueue.TaskBackend, dsn: str) -> None:
    for i in range(5):
        backend.queue_task("add", a=i, b=i)
    done = run_cli(["pgqueue-worker", "--task-paths", TEST_JOBS, "--max-tasks", "2"], dsn)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = sql(
        dsn, "SELECT status, count(*) AS n FROM pgqueue.task GROUP BY 1"
    )
    assert {r["status"]: r["n"] for r in rows} == {1: 2, 6: 3}

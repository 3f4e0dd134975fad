"""The operator CLI, each command run as a subprocess: output, --json, exit codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pgqueue import TaskBackend, states
from pgqueue._cli_common import EXIT_FAILED, EXIT_SCHEMA, EXIT_UNAVAILABLE, EXIT_USAGE
from pgqueue._cli_tasks import EXIT_TIMEOUT
from tests.support.fixtures import run_cli, sql
from tests.support.ops_data import add_task, transaction

OPS_JOBS = "tests.support.ops_jobs"


@pytest.fixture
def client_jobs() -> list[str]:
    return [OPS_JOBS]


def pgqueue(dsn: str | None, *args: str, timeout: float = 60) -> Any:
    return run_cli(["pgqueue", *args], dsn, timeout=timeout)


def run_all(start_worker: Any) -> None:
    """Run every queued task with a real worker until none is left."""
    start_worker(task_paths=[OPS_JOBS], burst=True).join(60)


@pytest.fixture
def ran(client: TaskBackend, start_worker: Any, tmp_path: Path) -> dict[str, str]:
    """One success, one failure (with traceback), one task still queued for later."""
    ids = {
        "ok": client.queue_task("double", n=21),
        "failed": client.queue_task("broken", reason="disk full"),
    }
    run_all(start_worker)
    ids["later"] = client.queue_task("double", n=1, countdown=3600)
    return {k: str(v) for k, v in ids.items()}


def test_status_summarizes_queues_throughput_and_workers(dsn: str, ran: dict[str, str]) -> None:
    done = pgqueue(dsn, "status")
    assert done.returncode == 0, done.stderr
    assert "double" in done.stdout and "broken" in done.stdout
    assert "Finished recently" in done.stdout
    assert "1 stopped" in done.stdout
    data = json.loads(pgqueue(dsn, "status", "--json").stdout)
    by_job = {row["name"]: row for row in data["queues"]}
    assert (by_job["double"]["success_last_hour"], by_job["double"]["queued"]) == (1, 1)
    assert by_job["broken"]["failure_last_hour"] == 1
    assert data["workers"] == {"alive": 0, "stopped": 1, "lost": 0}
    minute = [r for r in data["throughput"] if r["period"] == "1 minute"]
    assert sorted(r["name"] for r in minute) == ["broken", "double"]
    assert data["stuck"] == []


def test_status_of_an_empty_queue(dsn: str) -> None:
    done = pgqueue(dsn, "status")
    assert done.returncode == 0 and "no tasks yet" in done.stdout


@pytest.mark.slow
def test_list_filters_by_state_job_queue_and_since(dsn: str, ran: dict[str, str]) -> None:
    rows = json.loads(pgqueue(dsn, "list", "--json").stdout)
    assert {r["id"] for r in rows} == set(ran.values())
    failed = json.loads(pgqueue(dsn, "list", "--state", "failure", "--json").stdout)
    assert [r["id"] for r in failed] == [ran["failed"]]
    assert failed[0]["error"] == "OSError: disk full"
    both = pgqueue(dsn, "list", "--state", "success,queued", "--job", "double", "--json")
    assert {r["id"] for r in json.loads(both.stdout)} == {ran["ok"], ran["later"]}
    assert json.loads(pgqueue(dsn, "list", "--queue", "other", "--json").stdout) == []
    assert len(json.loads(pgqueue(dsn, "list", "--since", "1h", "--limit", "2", "--json").stdout))
    table = pgqueue(dsn, "list", "--state", "FAILURE")
    assert ran["failed"] in table.stdout and "disk full" in table.stdout


def test_list_rejects_bad_filters_with_a_clear_error(dsn: str) -> None:
    for args, says in [
        (["--state", "finished"], "unknown state 'finished'"),
        (["--since", "yesterday"], "is not a duration"),
        (["--limit", "0"], "greater than or equal to 1"),
    ]:
        done = pgqueue(dsn, "list", *args)
        assert done.returncode == EXIT_USAGE, (args, done.stderr)
        assert says in done.stderr and "Traceback" not in done.stderr


def test_show_prints_everything_including_the_traceback(dsn: str, ran: dict[str, str]) -> None:
    done = pgqueue(dsn, "show", ran["failed"])
    assert done.returncode == 0
    assert "FAILURE" in done.stdout and '"reason": "disk full"' in done.stdout
    assert "Traceback (most recent call last)" in done.stdout
    assert "OSError: disk full" in done.stdout
    task = json.loads(pgqueue(dsn, "show", ran["ok"], "--json").stdout)
    assert (task["state"], task["result"], task["kwargs"]) == ("SUCCESS", 42, {"n": 21})
    assert task["wait_seconds"] >= 0 and task["run_seconds"] >= 0


def test_show_bad_and_unknown_ids(dsn: str) -> None:
    bad = pgqueue(dsn, "show", "42")
    assert bad.returncode == EXIT_USAGE and "'42' is not a task id" in bad.stderr
    missing = pgqueue(dsn, "show", "00000000-0000-4000-8000-000000000000")
    assert missing.returncode == EXIT_FAILED and "no task has id" in missing.stderr
    assert "Traceback" not in bad.stderr + missing.stderr


def test_queue_parses_values_as_json_where_they_parse(dsn: str, client: TaskBackend) -> None:
    done = pgqueue(
        dsn,
        "queue",
        "broken",
        "reason=full",
        "--task-paths",
        OPS_JOBS,
        "--priority",
        "5",
        "--countdown",
        "10m",
    )
    assert done.returncode == 0, done.stderr
    task = client.get_task(done.stdout.strip())
    assert task is not None and task.status == states.QUEUED
    assert (task.kwargs, task.priority) == ({"reason": "full"}, 5)
    assert task.run_at is not None and task.time_queued is not None
    assert 590 <= (task.run_at - task.time_queued).total_seconds() <= 610
    out = pgqueue(dsn, "queue", "double", "n=[1, 2]", "--task-paths", OPS_JOBS, "--json")
    queued = client.get_task(json.loads(out.stdout)["id"])
    assert queued is not None and queued.kwargs == {"n": [1, 2]}
    out = pgqueue(dsn, "queue", "double", 'n={"a": null}', "--task-paths", OPS_JOBS)
    queued = client.get_task(out.stdout.strip())
    assert queued is not None and queued.kwargs == {"n": {"a": None}}


@pytest.mark.slow
def test_queue_refuses_bad_arguments_and_queues_nothing(dsn: str) -> None:
    for args, code, says in [
        (["double", "n"], EXIT_USAGE, "must be KEY=VALUE"),
        (["double", "n=1", "n=2"], EXIT_USAGE, "given twice"),
        (["nosuchjob"], EXIT_USAGE, "'nosuchjob' is not registered"),
        (["double", "n=1", "--countdown", "soon"], EXIT_USAGE, "is not a duration"),
    ]:
        done = pgqueue(dsn, "queue", *args, "--task-paths", OPS_JOBS)
        assert done.returncode == code, (args, done.stderr)
        assert says in done.stderr and "Traceback" not in done.stderr
    no_paths = pgqueue(dsn, "queue", "double", "n=1")
    assert no_paths.returncode == EXIT_USAGE and "--task-paths" in no_paths.stderr
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 0


def test_queue_a_second_live_copy_of_a_non_overlapping_job(dsn: str) -> None:
    first = pgqueue(dsn, "queue", "single", "key=k", "--task-paths", OPS_JOBS)
    assert first.returncode == 0
    second = pgqueue(dsn, "queue", "single", "key=k", "--task-paths", OPS_JOBS, "--json")
    assert second.returncode == EXIT_FAILED and "cannot overlap" in second.stderr
    assert json.loads(second.stdout) == {"id": None, "queued": False}


@pytest.mark.slow
def test_revoke_a_waiting_task_and_refuse_a_finished_one(dsn: str, ran: dict[str, str]) -> None:
    done = pgqueue(dsn, "revoke", ran["later"])
    assert done.returncode == 0 and "REVOKED" in done.stdout
    task = json.loads(pgqueue(dsn, "show", ran["later"], "--json").stdout)
    assert (task["state"], task["error"]) == ("REVOKED", "revoked by an operator")
    again = pgqueue(dsn, "revoke", ran["ok"])
    assert again.returncode == EXIT_FAILED and "already finished (SUCCESS)" in again.stderr
    assert pgqueue(dsn, "revoke", "nope").returncode == EXIT_USAGE


def test_revoke_of_a_running_task_says_a_stop_was_requested(dsn: str) -> None:
    """F26: for a STARTED task ``pgqueue revoke`` says the worker was asked to stop it, and
    that a job returning normally all the same ends SUCCESS (the RevokeResult, not a state
    read again after the call, decides the message)."""
    task_id = sql(
        dsn,
        "INSERT INTO pgqueue.task (name, queue, status, kwargs, worker, attempts, time_started) "
        "VALUES ('add', 'tasks', 5, '{}', 'w', 1, now()) RETURNING id::text AS id",
    )[0]["id"]
    done = pgqueue(dsn, "revoke", task_id)
    assert done.returncode == 0, done.stderr
    assert "was running: its worker was told to stop it" in done.stdout
    assert "returns normally" in done.stdout and "SUCCESS" in done.stdout


@pytest.mark.slow
def test_retry_runs_a_failed_task_again(
    dsn: str, client: TaskBackend, start_worker: Any, tmp_path: Path
) -> None:
    task_id = str(client.queue_task("fail_once", marker=str(tmp_path / "marker")))
    run_all(start_worker)
    assert json.loads(pgqueue(dsn, "show", task_id, "--json").stdout)["state"] == "FAILURE"
    done = pgqueue(dsn, "retry", task_id)
    assert done.returncode == 0 and "QUEUED" in done.stdout, done.stderr
    run_all(start_worker)
    task = json.loads(pgqueue(dsn, "show", task_id, "--json").stdout)
    assert (task["state"], task["result"], task["attempts"]) == ("SUCCESS", "second time lucky", 2)
    again = pgqueue(dsn, "retry", task_id)
    assert again.returncode == EXIT_FAILED
    assert "only FAILURE and REVOKED tasks can be retried" in again.stderr


def test_retry_says_which_live_task_holds_the_lock(dsn: str) -> None:
    with transaction(dsn) as conn:
        failed = add_task(conn, "single", states.FAILURE, queued=9, started=8, ended=7,
                          lock_id="lock-1")  # fmt: skip
        live = add_task(conn, "single", states.QUEUED, queued=1, lock_id="lock-1")
        conn.commit()
    done = pgqueue(dsn, "retry", failed)
    assert done.returncode == EXIT_FAILED
    assert f"task {live} (QUEUED)" in done.stderr and "cannot overlap" in done.stderr
    assert json.loads(pgqueue(dsn, "show", failed, "--json").stdout)["state"] == "FAILURE"


@pytest.mark.slow
def test_wait_exit_codes(dsn: str, client: TaskBackend, start_worker: Any) -> None:
    start_worker(task_paths=[OPS_JOBS], poll_timeout=0.5)
    ok = str(client.queue_task("double", n=2))
    done = pgqueue(dsn, "wait", ok, "--timeout", "30s", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == 4
    failed = str(client.queue_task("broken"))
    done = pgqueue(dsn, "wait", failed, "--timeout", "30")
    assert done.returncode == EXIT_FAILED and "FAILURE" in done.stdout
    later = str(client.queue_task("double", n=1, countdown=3600))
    done = pgqueue(dsn, "wait", later, "--timeout", "0.5")
    assert done.returncode == EXIT_TIMEOUT and "still QUEUED" in done.stderr
    assert pgqueue(dsn, "wait", "x").returncode == EXIT_USAGE


@pytest.mark.slow
def test_workers_lists_what_ran(dsn: str, ran: dict[str, str]) -> None:
    rows = json.loads(pgqueue(dsn, "workers", "--json").stdout)
    assert len(rows) == 1 and rows[0]["state"] == "stopped"
    assert rows[0]["queues"] == ["tasks"] and rows[0]["running"] == 0
    table = pgqueue(dsn, "workers", "--all")
    assert rows[0]["id"] in table.stdout and "stopped" in table.stdout


@pytest.mark.slow
def test_prune_deletes_old_finished_tasks_in_batches(dsn: str) -> None:
    """F10: retention exists apart from the claim path, in short batches; live tasks stay."""
    day = 86400
    with transaction(dsn) as conn:
        old = [
            add_task(conn, "a", status, queued=9 * day, started=9 * day, ended=8 * day)
            for status in [states.SUCCESS] * 5 + [states.FAILURE] * 2 + [states.REVOKED]
        ]
        recent = add_task(conn, "a", states.SUCCESS, queued=day, started=day, ended=day)
        waiting = add_task(conn, "a", states.QUEUED, queued=30 * day)
        conn.commit()
    dry = pgqueue(dsn, "prune", "--older-than", "7d", "--dry-run")
    assert dry.returncode == 0 and "8 tasks would be deleted" in dry.stdout
    failures = pgqueue(dsn, "prune", "--older-than", "7d", "--state", "failure")
    assert failures.returncode == 0 and "deleted 2 tasks" in failures.stdout
    done = pgqueue(dsn, "prune", "--older-than", "1w", "--batch", "2")
    assert done.returncode == 0 and "deleted 6 tasks" in done.stdout, done.stderr
    left = {r["id"] for r in sql(dsn, "SELECT id::text AS id FROM pgqueue.task")}
    assert left == {recent, waiting} and not left & set(old)


@pytest.mark.slow
def test_prune_refuses_live_states_and_bad_ages(dsn: str) -> None:
    for args, says in [
        (["--older-than", "7d", "--state", "queued"], "not allowed here"),
        (["--older-than", "a week"], "is not a duration"),
    ]:
        done = pgqueue(dsn, "prune", *args)
        assert done.returncode == EXIT_USAGE and says in done.stderr, done.stderr
    missing = pgqueue(dsn, "prune")
    assert missing.returncode == EXIT_USAGE and "--older-than" in missing.stderr


@pytest.mark.slow
def test_every_read_command_reports_a_missing_database_setup(
    dsn: str, empty_dsn: str, tmp_path: Path
) -> None:
    reads = [["status"], ["list"], ["workers"], ["show", "00000000-0000-4000-8000-000000000000"]]
    for args in reads:
        nothing = pgqueue(None, *args)
        assert nothing.returncode == EXIT_USAGE and "PGQUEUE_DSN" in nothing.stderr
        schema = pgqueue(empty_dsn, *args)
        assert schema.returncode == EXIT_SCHEMA and "pgqueue migrate" in schema.stderr
        down = pgqueue(f"host={tmp_path} port=1 dbname=x user=u password=secret", *args)
        assert down.returncode == EXIT_UNAVAILABLE, down.stderr
        assert "secret" not in down.stderr and "Traceback" not in down.stderr

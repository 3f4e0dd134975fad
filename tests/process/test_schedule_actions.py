"""Operators' actions on periodic schedules (issue 18), against real ``pgqueue-worker
--schedule-periodic`` processes: pause and resume (fleet-wide, in the schedule row), trigger
(one run now, queued by the scheduler as a tick), from ``pgqueue schedule`` and the dashboard
(CSRF, read-only), each recorded in the audit trail; unknown names change nothing."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pgqueue import JobRegistry
from pgqueue._backend import TaskBackend
from pgqueue._ops import Operations
from pgqueue._scheduler import Scheduler
from tests.support import schedule_action_jobs
from tests.support.fixtures import ROOT, bin_path, cli_env, run_cli, sql

from .test_dashboard import http, start_dashboard

__all__ = ["start_dashboard"]  # the fixture, imported for this module's tests

JOBS = "tests.support.schedule_action_jobs"


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def worker(dsn: str) -> Iterator[subprocess.Popen[str]]:
    """A ``pgqueue-worker --schedule-periodic`` on :mod:`tests.support.schedule_action_jobs`,
    once both schedules are defined."""
    proc = subprocess.Popen(
        [bin_path("pgqueue-worker"), "--task-paths", JOBS, "--schedule-periodic"],
        env=cli_env(dsn),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: len(sql(dsn, "SELECT name FROM pgqueue.schedule")) == 3,
            30,
            "the worker to define its schedules",
        )
        yield proc
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def tasks_of(dsn: str, name: str) -> list[dict[str, Any]]:
    return sql(
        dsn,
        "SELECT id, meta_params FROM pgqueue.task WHERE name = %s ORDER BY time_queued",
        (name,),
    )


def schedule_row(dsn: str, name: str) -> dict[str, Any]:
    return sql(dsn, "SELECT * FROM pgqueue.schedule WHERE name = %s", (name,))[0]


def audit(dsn: str) -> list[dict[str, Any]]:
    return sql(dsn, "SELECT actor, action, detail FROM pgqueue.operator_action ORDER BY id")


@pytest.mark.slow
def test_pause_stops_the_ticks_of_a_running_scheduler_and_resume_restarts_them(
    dsn: str, worker: subprocess.Popen[str]
) -> None:
    wait_until(lambda: len(tasks_of(dsn, "beat")) >= 2, 20, "two ticks of beat")
    paused = run_cli(["pgqueue", "schedule", "pause", "beat"], dsn)
    assert paused.returncode == 0, paused.stderr
    assert "schedule 'beat' is paused" in paused.stdout
    before = len(tasks_of(dsn, "beat"))
    skipped_before = schedule_row(dsn, "beat")["skipped_count"]
    time.sleep(3)
    assert len(tasks_of(dsn, "beat")) == before  # no tick queued while paused
    row = schedule_row(dsn, "beat")
    assert row["paused_at"] is not None
    assert row["skipped_count"] >= skipped_before + 2  # the paused ticks count as skipped
    assert row["last_outcome"] == "skipped (paused)"
    listed = run_cli(["pgqueue", "schedule", "--json"], dsn)
    shown = {r["name"]: r for r in json.loads(listed.stdout)}
    assert shown["beat"]["paused_at"] and shown["yearly"]["paused_at"] is None
    assert "paused since" in run_cli(["pgqueue", "schedule"], dsn, COLUMNS="250").stdout

    resumed = run_cli(["pgqueue", "schedule", "resume", "beat"], dsn)
    assert resumed.returncode == 0 and "schedule 'beat' resumed" in resumed.stdout
    wait_until(lambda: len(tasks_of(dsn, "beat")) > before, 10, "a tick after the resume")
    assert schedule_row(dsn, "beat")["paused_at"] is None
    # resuming does not catch up on the paused ticks (beat's policy would run one otherwise)
    time.sleep(0.5)
    assert len(tasks_of(dsn, "beat")) <= before + 2
    actions = [(a["action"], a["detail"]) for a in audit(dsn)]
    assert actions == [
        ("pause schedule", {"schedule": "beat"}),
        ("resume schedule", {"schedule": "beat"}),
    ]


@pytest.mark.slow
def test_trigger_queues_one_task_now_and_names_the_operator(
    dsn: str, worker: subprocess.Popen[str]
) -> None:
    assert tasks_of(dsn, "yearly") == []
    done = run_cli(["pgqueue", "schedule", "trigger", "yearly"], dsn)
    assert done.returncode == 0, done.stderr
    queued = tasks_of(dsn, "yearly")  # queued by the command itself, not by a scheduler
    assert len(queued) == 1
    assert f"run of 'yearly' queued as task {queued[0]['id']} on queue 'tasks'" in done.stdout
    time.sleep(1.5)
    assert tasks_of(dsn, "yearly") == queued  # and the scheduler queued no second one
    meta = queued[0]["meta_params"]
    assert meta["triggered_by"] == audit(dsn)[0]["actor"] and "@" in meta["triggered_by"]
    assert "tick" in meta and "triggered_at" in meta
    row = schedule_row(dsn, "yearly")
    assert row["trigger_requested_at"] is None and row["runs_count"] == 1
    assert row["last_outcome"] == "triggered" and str(row["last_task"]) == str(queued[0]["id"])
    assert [a["action"] for a in audit(dsn)] == ["trigger schedule"]
    assert audit(dsn)[0]["detail"] == {"schedule": "yearly", "queued": True}


@pytest.mark.slow
def test_unknown_schedule_names_give_a_clear_error_and_change_nothing(
    dsn: str, worker: subprocess.Popen[str]
) -> None:
    rows = sql(
        dsn, "SELECT name, paused_at, trigger_requested_at FROM pgqueue.schedule ORDER BY name"
    )
    for verb in ("pause", "resume", "trigger"):
        done = run_cli(["pgqueue", "schedule", verb, "nosuch"], dsn)
        assert done.returncode == 2, (verb, done.stdout, done.stderr)
        assert "no periodic job named 'nosuch' has a schedule" in done.stderr
        assert "beat" in done.stderr and "Traceback" not in done.stderr
    assert (
        sql(dsn, "SELECT name, paused_at, trigger_requested_at FROM pgqueue.schedule ORDER BY name")
        == rows
    )
    assert audit(dsn) == []


@pytest.mark.slow
def test_dashboard_buttons_pause_resume_and_trigger(
    dsn: str, worker: subprocess.Popen[str], start_dashboard: Callable[..., str]
) -> None:
    url = start_dashboard()
    status, headers, body = http(url + "/schedules")
    assert status == 200 and 'class="schedule-pause"' in body
    cookie = headers["set-cookie"].split(";")[0]
    token = cookie.split("=", 1)[1]
    with_cookie = {"Cookie": cookie}

    def post(path: str, data: dict[str, str]) -> tuple[int, dict[str, str], str]:
        return http(url + path, data=data, headers=with_cookie)

    status, _, body = post("/schedules/yearly/pause", {"csrf": "guess"})
    assert status == 403 and "CSRF token" in body
    assert schedule_row(dsn, "yearly")["paused_at"] is None

    status, headers, _ = post("/schedules/yearly/pause", {"csrf": token})
    assert status == 303 and "paused" in headers["location"], headers
    assert schedule_row(dsn, "yearly")["paused_at"] is not None
    page = http(url + "/schedules")[2]
    assert "paused since" in page and 'class="schedule-resume"' in page

    status, headers, _ = post("/schedules/yearly/trigger", {"csrf": token})
    assert status == 303 and "run+queued+as+task" in headers["location"], headers
    queued = tasks_of(dsn, "yearly")
    assert len(queued) == 1 and "via dashboard" in queued[0]["meta_params"]["triggered_by"]

    status, headers, _ = post("/schedules/yearly/resume", {"csrf": token})
    assert status == 303 and schedule_row(dsn, "yearly")["paused_at"] is None

    status, headers, _ = post("/schedules/nosuch/pause", {"csrf": token})
    assert status == 303 and "no+periodic+job+named" in headers["location"]
    actions = [(a["action"], a["detail"]["schedule"]) for a in audit(dsn)]
    assert actions == [
        ("pause schedule", "yearly"),
        ("trigger schedule", "yearly"),
        ("resume schedule", "yearly"),
    ]
    assert all("via dashboard" in a["actor"] for a in audit(dsn))

    read_only = start_dashboard("--read-only")
    assert 'class="schedule-pause"' not in http(read_only + "/schedules")[2]
    status, _, body = http(read_only + "/schedules/beat/pause", data={"csrf": token})
    assert status == 403 and "read-only" in body
    assert schedule_row(dsn, "beat")["paused_at"] is None


def define_without_scheduler(dsn: str) -> None:
    """Store the schedules of :mod:`tests.support.schedule_action_jobs` as a scheduler does
    at its start, then close it: from here on no scheduler runs."""
    jobs = [schedule_action_jobs.yearly, schedule_action_jobs.yearly_report]
    scheduler = Scheduler(dsn, JobRegistry(jobs))
    try:
        scheduler.define()
    finally:
        scheduler.close()


def task_rows(dsn: str, name: str) -> list[dict[str, Any]]:
    return sql(
        dsn,
        "SELECT t.id::text AS id, t.queue, t.priority, t.max_retries, t.lock_id, t.meta_params, "
        "t.result, s.name AS state, t.expiry - t.time_queued AS expires_after "
        "FROM pgqueue.task t JOIN pgqueue.state s ON s.code = t.status "
        "WHERE t.name = %s ORDER BY t.time_queued",
        (name,),
    )


@pytest.mark.slow
def test_a_trigger_queues_the_task_itself_for_any_worker_of_its_queue(dsn: str) -> None:
    define_without_scheduler(dsn)
    done = run_cli(["pgqueue", "schedule", "trigger", "yearly_report"], dsn)
    assert done.returncode == 0, done.stderr
    (task,) = task_rows(dsn, "yearly_report")  # queued before the command returned
    assert f"queued as task {task['id']} on queue 'reports'" in done.stdout
    # the job's options, as a tick of the scheduler would have queued it
    assert (task["queue"], task["priority"], task["max_retries"]) == ("reports", 7, 2)
    assert task["expires_after"].total_seconds() == 600 and task["lock_id"] is not None
    (line,) = audit(dsn)
    assert (line["action"], line["detail"]) == (
        "trigger schedule",
        {"schedule": "yearly_report", "queued": True},
    )
    assert task["meta_params"]["triggered_by"] == line["actor"]
    assert {"tick", "triggered_at"} <= set(task["meta_params"])
    assert sql(dsn, "SELECT task_id::text AS t FROM pgqueue.operator_action")[0]["t"] == task["id"]
    row = schedule_row(dsn, "yearly_report")
    assert (row["runs_count"], str(row["last_task"]), row["last_outcome"]) == (
        1,
        task["id"],
        "triggered",
    )
    assert row["trigger_requested_at"] is None

    # A worker of the queue that does not schedule (no --schedule-periodic) runs it.
    proc = subprocess.Popen(
        [bin_path("pgqueue-worker"), "--task-paths", JOBS, "--queues", "reports"],
        env=cli_env(dsn),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: task_rows(dsn, "yearly_report")[0]["state"] == "SUCCESS", 30, "the run")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert task_rows(dsn, "yearly_report")[0]["result"] == line["actor"]


@pytest.mark.slow
def test_a_trigger_respects_can_overlap_like_a_tick(dsn: str) -> None:
    define_without_scheduler(dsn)
    with TaskBackend(dsn, pool_size=1) as backend:
        ops = Operations(backend)
        first = ops.trigger_schedule("yearly", actor="ops")
        assert first["queued"] and first["queue"] == "tasks"
        (queued,) = task_rows(dsn, "yearly")
        assert queued["id"] == first["task_id"] and queued["meta_params"]["triggered_by"] == "ops"
        second = ops.trigger_schedule("yearly", actor="ops")  # no worker: the first is QUEUED
    assert (second["queued"], second["task_id"]) == (False, None)
    assert task_rows(dsn, "yearly") == [queued]
    row = schedule_row(dsn, "yearly")
    assert (row["last_outcome"], row["runs_count"]) == ("trigger skipped (overlap)", 1)
    assert row["trigger_requested_at"] is None
    assert [a["detail"]["queued"] for a in audit(dsn)] == [True, False]
    again = run_cli(["pgqueue", "schedule", "trigger", "yearly"], dsn)
    assert again.returncode == 1
    assert "not queued: the job cannot overlap and its previous task is still live" in again.stdout
    assert task_rows(dsn, "yearly") == [queued]


@pytest.mark.slow
def test_a_schedule_stored_by_an_older_scheduler_is_triggered_through_a_request(
    dsn: str,
) -> None:
    """No task_options yet (defined before revision pgqueue_0013_queue_stats): the trigger
    falls back to a request that the next scheduler round serves."""
    scheduler = Scheduler(dsn, JobRegistry([schedule_action_jobs.yearly]))
    try:
        scheduler.define()
        sql(dsn, "UPDATE pgqueue.schedule SET task_options = NULL")
        with TaskBackend(dsn, pool_size=1) as backend:
            requested = Operations(backend).trigger_schedule("yearly", actor="ops")
        assert requested["trigger_requested_at"] is not None and not requested["queued"]
        assert tasks_of(dsn, "yearly") == []
        assert scheduler.seconds_to_next_tick() == 0.0  # a pending request is due now
        scheduler.tick()
        (task,) = task_rows(dsn, "yearly")
        assert task["meta_params"]["triggered_by"] == "ops"
        assert schedule_row(dsn, "yearly")["trigger_requested_at"] is None
        scheduler.define()  # a scheduler of this version starting: the options are stored
        assert schedule_row(dsn, "yearly")["task_options"]["queue"] == "tasks"
    finally:
        scheduler.close()

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
            lambda: len(sql(dsn, "SELECT name FROM pgqueue.schedule")) == 2,
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
    started = time.monotonic()
    done = run_cli(["pgqueue", "schedule", "trigger", "yearly"], dsn)
    assert done.returncode == 0, done.stderr
    assert "run of 'yearly' requested" in done.stdout
    queued = wait_until(lambda: tasks_of(dsn, "yearly"), 10, "the triggered task")
    assert time.monotonic() - started < 5  # served by the scheduler's next round, not a tick
    time.sleep(1.5)
    queued = tasks_of(dsn, "yearly")
    assert len(queued) == 1
    meta = queued[0]["meta_params"]
    assert meta["triggered_by"] == audit(dsn)[0]["actor"] and "@" in meta["triggered_by"]
    assert "tick" in meta and "triggered_at" in meta
    row = schedule_row(dsn, "yearly")
    assert row["trigger_requested_at"] is None and row["runs_count"] == 1
    assert row["last_outcome"] == "triggered" and str(row["last_task"]) == str(queued[0]["id"])
    assert [a["action"] for a in audit(dsn)] == ["trigger schedule"]


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
    assert status == 303 and "run+requested" in headers["location"], headers
    queued = wait_until(lambda: tasks_of(dsn, "yearly"), 10, "the triggered task")
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


@pytest.mark.slow
def test_a_trigger_respects_can_overlap_like_a_tick(dsn: str) -> None:
    scheduler = Scheduler(dsn, JobRegistry([schedule_action_jobs.yearly]))
    try:
        scheduler.define()
        with TaskBackend(dsn, pool_size=1) as backend:
            ops = Operations(backend)
            ops.trigger_schedule("yearly", actor="ops")
            assert scheduler.seconds_to_next_tick() == 0.0  # a pending trigger is due now
            scheduler.tick()
            first = tasks_of(dsn, "yearly")
            assert len(first) == 1 and first[0]["meta_params"]["triggered_by"] == "ops"
            ops.trigger_schedule("yearly", actor="ops")  # no worker: the first is still QUEUED
            scheduler.tick()
        assert tasks_of(dsn, "yearly") == first
        row = schedule_row(dsn, "yearly")
        assert row["last_outcome"] == "trigger skipped (overlap)"
        assert row["trigger_requested_at"] is None and row["runs_count"] == 1
        assert scheduler.seconds_to_next_tick() > 3600  # the request was served, not left due
    finally:
        scheduler.close()

"""Flow control on the dashboard (issue 13), in headless Chromium against a real ``pgqueue
dashboard`` process: each queue's limits and state on the overview, a pause/resume button per
queue (CSRF-checked, audited, hidden and refused when read-only)."""

# ruff: noqa: F811  (the fixtures of tests/test_dashboard.py, imported, are parameters here)

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pgqueue import TaskBackend
from tests.support.fixtures import sql

from .test_dashboard import browser, http, page, start_dashboard  # noqa: F401  (fixtures)
from .test_dashboard import pytestmark as dashboard_marks

pytestmark = dashboard_marks

OPS_JOBS = "tests.support.ops_jobs"


def _mail_queue(dsn: str) -> None:
    """A queue with one waiting task and limits (no worker: nothing runs)."""
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        client.queue_task("double", n=1, queue="mail")
        client.set_queue_limit("mail", concurrency=3, rate=(10, 60.0))


def _paused_at(dsn: str) -> Any:
    rows = sql(dsn, "SELECT paused_at FROM pgqueue.queue_setting WHERE queue = 'mail'")
    return rows[0]["paused_at"]


@pytest.mark.slow
def test_pause_and_resume_a_queue_from_the_overview_with_its_limits_shown(
    dsn: str, start_dashboard: Callable[..., str], page: Any
) -> None:
    _mail_queue(dsn)
    url = start_dashboard()
    page.goto(url + "/")
    row = page.locator("#queue-flow tr[data-queue='mail']")
    assert row.locator(".concurrency").inner_text() == "3"
    assert row.locator(".rate").inner_text() == "10 per 1m 00s"
    assert row.locator(".paused").inner_text() == "running"
    row.locator("button.queue-pause").click()
    page.wait_for_selector(".flash.ok:has-text('queue mail: paused')")
    assert _paused_at(dsn) is not None
    row = page.locator("#queue-flow tr[data-queue='mail']")
    assert row.locator(".paused").inner_text().startswith("paused since")
    row.locator("button.queue-resume").click()
    page.wait_for_selector(".flash.ok:has-text('queue mail: resumed')")
    assert _paused_at(dsn) is None
    assert page.locator("#queue-flow tr[data-queue='mail'] button.queue-pause").count() == 1
    audit = sql(dsn, "SELECT action, detail FROM pgqueue.operator_action ORDER BY id")
    assert [(a["action"], a["detail"]) for a in audit] == [
        ("pause queue", {"queue": "mail"}),
        ("resume queue", {"queue": "mail"}),
    ]


@pytest.mark.slow
def test_a_queue_pause_needs_the_csrf_token_and_a_writable_dashboard(
    dsn: str, start_dashboard: Callable[..., str], page: Any
) -> None:
    _mail_queue(dsn)
    url = start_dashboard()
    status, headers, _ = http(url + "/")
    cookie = headers["set-cookie"].split(";")[0]
    token = cookie.split("=", 1)[1]
    pause = url + "/queues/mail/pause"
    status, _, body = http(pause, data={"csrf": "guess"}, headers={"Cookie": cookie})
    assert status == 403 and "CSRF token" in body
    assert _paused_at(dsn) is None
    status, headers, _ = http(
        url + "/queues/nope/pause", data={"csrf": token}, headers={"Cookie": cookie}
    )
    assert status == 303 and "unknown+queue" in headers["location"]
    read_only = start_dashboard("--read-only")
    page.goto(read_only + "/")
    assert page.locator("#queue-flow tr[data-queue='mail']").count() == 1
    assert page.locator("#queue-flow button").count() == 0
    response = page.request.post(read_only + "/queues/mail/pause", form={"csrf": "x"})
    assert response.status == 403 and "read-only" in response.text()
    assert _paused_at(dsn) is None
    assert json.dumps(sql(dsn, "SELECT count(*) AS n FROM pgqueue.operator_action")) == '[{"n": 0}]'

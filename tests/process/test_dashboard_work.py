"""The dashboard as a place to work (issue 18), in headless Chromium against a real
``pgqueue dashboard`` process and a real worker: find a task by id prefix or by its arguments,
several states at once, sorted pages with a total, local time beside UTC, dark mode; and the
dashboard mounted under a path prefix inside another application.

``PGQUEUE_UPDATE_SCREENSHOT=1`` refreshes ``docs/dashboard-tasks.png`` and
``docs/dashboard-dark.png``.
"""

# ruff: noqa: F811  (the fixtures of tests/test_dashboard.py, imported, are parameters here)

from __future__ import annotations

import os
import re
import shutil
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

from pgqueue import TaskBackend
from pgqueue._dashboard.app import create_app
from tests.support.fixtures import ROOT, run_cli, sql

from .test_dashboard import browser, page, start_dashboard, tasks  # noqa: F401  (fixtures)
from .test_dashboard import pytestmark as dashboard_marks

#: The same allowance as the dashboard's own browser tests (the shared browser's threads).
pytestmark = dashboard_marks

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

DOCS = ROOT / "docs"
OPS_JOBS = "tests.support.ops_jobs"


def keep_screenshot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("PGQUEUE_UPDATE_SCREENSHOT"):
        shutil.copy(shot, DOCS / name)


def test_find_a_task_by_its_id_prefix(
    dsn: str, tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any
) -> None:
    url = start_dashboard()
    page.goto(url + "/tasks")
    page.fill("input[name=id]", tasks["broken"][:8])
    page.click("#find-task")
    page.wait_for_url(f"**/tasks/{tasks['broken']}")
    assert "OSError: disk full" in page.inner_text("#error")
    page.goto(f"{url}/tasks/{tasks['broken'][:8]}")  # a prefix in the address works too
    assert page.inner_text("h1 code") == tasks["broken"]

    for n in range(2):
        sql(
            dsn,
            "INSERT INTO pgqueue.task (id, name, queue, kwargs) "
            "VALUES (%s::uuid, 'double', 'tasks', '{}')",
            (str(uuid.UUID("ab0de000" + f"{n:024x}")),),
        )
    page.goto(url + "/tasks")
    page.fill("input[name=id]", "ab0de000")
    page.click("#find-task")
    problem = page.locator(".flash.problem")
    assert "2 tasks have ids starting with ab0de000" in problem.inner_text()


def test_filter_by_states_and_arguments_sort_and_page(
    tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any, tmp_path: Path
) -> None:
    url = start_dashboard()
    page.goto(url + "/tasks")
    page.select_option("select[name=state]", ["FAILURE", "QUEUED"])
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"state=\w+&state=\w+"))
    shown = {r.get_attribute("data-id") for r in page.locator("#task-list tbody tr").all()}
    assert shown == {tasks["broken"], tasks["flaky"], tasks["later"]}
    assert page.inner_text("#task-total") == "3"

    page.goto(url + "/tasks")
    page.fill("input[name=args]", '{"n": 3}')
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"args="))
    shown = {r.get_attribute("data-id") for r in page.locator("#task-list tbody tr").all()}
    assert shown == {tasks["double3"]}
    page.fill("input[name=args]", "[1]")
    page.click("button:has-text('Filter')")
    assert "must be a JSON object" in page.inner_text(".flash.problem")

    # 11 tasks, 4 a page, oldest queued first: three pages, every task exactly once.
    page.goto(url + "/tasks?sort=queued_asc&limit=4")
    assert page.inner_text("#task-total") == "11"
    assert "page 1 of 3" in page.inner_text("#pager")
    seen: list[str | None] = []
    for number in (1, 2, 3):
        rows = page.locator("#task-list tbody tr")
        seen += [r.get_attribute("data-id") for r in rows.all()]
        if number < 3:
            page.click("#next-page")
            page.wait_for_url(re.compile(rf"page={number + 1}"))
    assert len(seen) == 11 and set(seen) == set(tasks.values())
    assert seen[0] == tasks["double0"] and seen[-1] == tasks["later"]
    assert page.locator("#next-page").count() == 0

    # Local time beside UTC, in the browser's zone.
    local = page.locator("#task-list time .local").first.inner_text()
    assert re.search(r"\(local \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC[+-]\d\d:\d\d\)", local)
    page.goto(url + "/tasks?sort=changed")
    keep_screenshot(page, tmp_path, "dashboard-tasks.png")


def test_dark_mode_follows_the_system(
    tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any, tmp_path: Path
) -> None:
    url = start_dashboard()
    page.goto(url + "/")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light == "rgb(248, 249, 251)" and dark == "rgb(12, 17, 29)"
    page.goto(f"{url}/tasks/{tasks['broken']}")
    keep_screenshot(page, tmp_path, "dashboard-dark.png")


def test_mounted_under_a_path_prefix_every_link_stays_inside(
    dsn: str, tasks: dict[str, str]
) -> None:
    dashboard = create_app(dsn)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with dashboard.router.lifespan_context(dashboard):  # the dashboard's own
            yield

    host = Starlette(routes=[Mount("/ops/queue", app=dashboard)], lifespan=lifespan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(host) as client:
            for path in ("/", "/tasks", f"/tasks/{tasks['broken']}", "/workers", "/schedules"):
                body = client.get("/ops/queue" + path).text
                links = re.findall(r'(?:href|action)="(/[^"]*)"', body)
                assert links, path
                outside = [link for link in links if not link.startswith("/ops/queue/")]
                assert not outside, (path, outside)
            assert 'data-base="/ops/queue"' in body
            found = client.get(
                "/ops/queue/tasks", params={"id": tasks["broken"][:8]}, follow_redirects=False
            )
            assert found.status_code == 303
            assert found.headers["location"] == f"/ops/queue/tasks/{tasks['broken']}"
            assert client.get("/ops/queue/static/dashboard.css").status_code == 200


def test_attempt_history_grant_attempts_run_now_and_the_audit_trail(
    dsn: str, tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any
) -> None:
    url = start_dashboard()
    # A manual retry keeps the first attempt's error and traceback in the history.
    page.goto(f"{url}/tasks/{tasks['flaky']}")
    assert page.locator("#attempts-history").count() == 0
    page.click("#retry")
    page.wait_for_selector(".summary .state.success")
    history = page.locator("#attempts-history tbody tr")
    assert history.count() == 1
    assert "RuntimeError: first attempt fails on purpose" in history.first.inner_text()
    assert "FAILURE" in history.first.inner_text()

    # Grant 2 more attempts to a job that always fails: it runs twice (the first failure
    # retried with the job's backoff), and both attempts stay in the history.
    # What the operator typed survives a live refresh of the page (pushed by another task).
    page.goto(f"{url}/tasks/{tasks['broken']}")
    page.wait_for_function("document.body.dataset.live == 'on'")
    page.fill("input[name=more]", "2")
    swapped = page.evaluate("document.body.dataset.updated || ''")
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        client.wait_for_task(str(client.queue_task("double", n=7)), timeout=30)
    page.wait_for_function(f"(document.body.dataset.updated || '') != {swapped!r}")
    assert page.input_value("input[name=more]") == "2"
    page.click("#grant")
    page.wait_for_selector(".flash.ok:has-text('until attempt 3')")
    page.wait_for_function("document.getElementById('attempts').textContent == '3'", timeout=60_000)
    page.wait_for_selector(".summary .state.failure")
    states = [r.inner_text() for r in page.locator("#attempts-history tbody tr").all()]
    assert len(states) == 2 and "FAILURE" in states[0] and "RETRY" in states[1]

    # Run a task delayed by an hour now.
    page.goto(f"{url}/tasks/{tasks['later']}")
    page.click("#run-now")
    page.wait_for_selector(".flash.ok:has-text('due now')")
    page.wait_for_selector(".summary .state.success")
    assert page.locator("#run-now").count() == 0

    # An action from the command line is in the trail too, with its user and host.
    assert run_cli(["pgqueue", "revoke", tasks["broken"][:8]], dsn).returncode == 1
    assert run_cli(["pgqueue", "retry", tasks["broken"][:8]], dsn).returncode == 0
    page.click("nav >> text=Audit")
    rows = page.locator("#actions tbody tr")
    assert [r.locator(".action").inner_text() for r in rows.all()] == [
        "retry", "run now", "grant attempts", "retry"
    ]  # fmt: skip
    assert "via dashboard from 127.0.0.1" in rows.nth(1).locator(".actor").inner_text()
    assert "@" in rows.first.locator(".actor").inner_text()
    assert '"more": 2' in rows.nth(2).inner_text()


def test_bulk_retry_of_failures_and_revoke_of_a_selection_ask_first_with_a_count(
    dsn: str, tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any, tmp_path: Path
) -> None:
    url = start_dashboard()
    page.goto(url + "/tasks?state=FAILURE&job=broken")
    page.click("#retry-failed")
    assert page.inner_text("#confirm-question") == (
        "Retry 1 FAILURE tasks of job broken in queue any?"
    )
    assert sql(dsn, "SELECT status FROM pgqueue.task WHERE name = 'broken'")[0]["status"] == 2
    page.click("#confirm")
    page.wait_for_selector(".flash.ok:has-text('1 tasks queued again')")
    assert (
        sql(dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE name = 'fail_once' AND status = 2")[
            0
        ]["n"]
        == 1
    )  # fmt: skip  (another job: untouched)

    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        extra = [str(client.queue_task("double", n=n, countdown=3600)) for n in (100, 101)]
    page.goto(url + "/tasks?state=QUEUED&sort=queued_asc")
    for task_id in (tasks["later"], extra[0]):
        page.check(f"tr[data-id='{task_id}'] input[name=ids]")
    page.click("#revoke-selected")
    assert page.inner_text("#confirm-question") == "Revoke the 2 selected tasks?"
    keep_screenshot(page, tmp_path, "dashboard-confirm.png")
    page.click("#confirm")
    page.wait_for_selector(".flash.ok:has-text('2 of 2 tasks revoked')")
    found = sql(dsn, "SELECT id::text AS id, status FROM pgqueue.task WHERE id = ANY(%s::uuid[])",
                ([tasks["later"], *extra],))  # fmt: skip
    assert {r["id"]: r["status"] for r in found} == {tasks["later"]: 3, extra[0]: 3, extra[1]: 6}

    page.goto(url + "/actions")
    what = [r.inner_text() for r in page.locator("#actions tbody tr .action").all()]
    assert what == ["revoke tasks", "retry failed tasks"]


def test_charts_have_axes_time_labels_and_a_range(
    tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any
) -> None:
    url = start_dashboard()
    page.goto(url + "/")
    chart = page.locator(".chart[data-queue=tasks]")
    ticks = chart.locator(".x-axis span").all_inner_texts()
    assert len(ticks) == 7 and all(re.fullmatch(r"\d\d:\d\d", t) for t in ticks), ticks
    assert chart.locator(".y-axis span").all_inner_texts()[-1] == "0"
    assert "last hour: 7 finished, 2 failed" in chart.locator("figcaption").inner_text()
    for span in ("day", "week"):
        page.click(f"#ranges >> text={span}")
        page.wait_for_url(f"**/?range={span}")
        chart = page.locator(".chart[data-queue=tasks]")
        assert f"last {span}: 7 finished, 2 failed" in chart.locator("figcaption").inner_text()
        assert chart.locator("svg rect").count() == 60
        ticks = chart.locator(".x-axis span").all_inner_texts()
        assert len(ticks) == 7 and all(re.fullmatch(r"\w{3} \d\d:\d\d", t) for t in ticks)
    assert page.locator(".chart[data-queue=reports] svg rect").count() == 60

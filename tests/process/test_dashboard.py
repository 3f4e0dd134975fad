"""The web dashboard end to end: a real ``pgqueue dashboard`` process, a real worker, and
Debian's headless Chromium driven by Playwright.

Set ``PGQUEUE_UPDATE_SCREENSHOT=1`` to refresh ``docs/dashboard.png`` (the README's picture)
from the run.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pgqueue import TaskBackend
from tests.support.fixtures import ROOT, bin_path, cli_env, run_cli

from .test_metrics import free_port

pytestmark = pytest.mark.allow_leaks(
    threads="asyncio_",
    reason="the module-scoped browser's event loop (Playwright's sync API) starts its "
    "executor threads when a page first needs them; they end with the module",
)

OPS_JOBS = "tests.support.ops_jobs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = ROOT / "docs" / "dashboard.png"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http(
    url: str, *, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """One request without following redirects: (status, headers, body)."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.fixture
def start_dashboard(dsn: str) -> Iterator[Callable[..., str]]:
    """``start_dashboard(*options, dsn=...)`` runs ``pgqueue dashboard`` and returns its URL."""
    procs: list[subprocess.Popen[str]] = []

    def start(*options: str, dsn_: str = dsn) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [bin_path("pgqueue"), "dashboard", "--port", str(port), *options],
            env=cli_env(dsn_),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                http(url + "/static/dashboard.css")
                return url
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not start"
                time.sleep(0.1)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for this module's tests. Module-scoped: Playwright's sync API keeps an event
    loop running on the main thread while it is open, which asyncio.run() elsewhere refuses."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def tasks(dsn: str, start_worker: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A running worker, and finished tasks: successes, failures, one that fails once."""
    start_worker(task_paths=[OPS_JOBS], queues=["tasks", "reports"], poll_timeout=1.0)
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        ids = {f"double{n}": client.queue_task("double", n=n) for n in range(5)}
        ids.update(
            {f"report{n}": client.queue_task("double", n=n, queue="reports") for n in range(3)}
        )
        ids["broken"] = client.queue_task("broken", reason="disk full")
        ids["flaky"] = client.queue_task("fail_once", marker=str(tmp_path / "marker"))
        for task_id in ids.values():
            client.wait_for_task(str(task_id), timeout=30)
        ids["later"] = client.queue_task("double", n=99, countdown=3600)
        yield {k: str(v) for k, v in ids.items()}


@pytest.mark.slow
def test_an_operator_finds_a_failure_reads_its_traceback_and_retries_it(
    dsn: str, tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any, tmp_path: Path
) -> None:
    url = start_dashboard()
    page.goto(url + "/")
    stats = page.locator("#queue-stats")
    for job, queues in (("double", 2), ("broken", 1), ("fail_once", 1)):
        assert stats.get_by_role("link", name=job, exact=True).count() == queues
    assert page.locator(".chart svg rect").count() == 2 * 60  # queues tasks and reports
    assert "1 alive" in page.inner_text("#worker-counts")

    # Filter the task list down to the failures of one job.
    page.click("nav >> text=Tasks")
    page.select_option("select[name=state]", "FAILURE")
    page.fill("input[name=job]", "fail_once")
    page.click("button:has-text('Filter')")
    page.wait_for_url(re.compile(r"state=FAILURE"))
    rows = page.locator("#task-list tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-id") == tasks["flaky"]

    # Open it and read the traceback.
    rows.first.locator("a").click()
    page.wait_for_url(f"**/tasks/{tasks['flaky']}")
    traceback = page.inner_text("#traceback")
    assert "Traceback (most recent call last)" in traceback
    assert "RuntimeError: first attempt fails on purpose" in traceback
    assert '"marker": ' in page.inner_text("#kwargs")

    # Retry: the task runs again and the page shows it succeed, pushed by LISTEN/NOTIFY.
    page.click("#retry")
    page.wait_for_selector(".flash.ok:has-text('queued again')")
    page.wait_for_selector(".summary .state.success")
    assert page.inner_text("#attempts") == "2"
    assert "second time lucky" in page.inner_text("#result")
    assert page.locator("#retry").count() == 0

    page.click("nav >> text=Workers")
    assert page.locator("#workers .worker.alive").count() == 1
    page.click("nav >> text=Schedules")
    assert page.locator("#schedules").count() == 1

    page.goto(url + "/")
    page.wait_for_selector("body[data-live=on]")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("PGQUEUE_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, SCREENSHOT)


@pytest.mark.slow
def test_pages_update_live_without_reloading(
    dsn: str, tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any
) -> None:
    url = start_dashboard()
    page.goto(url + "/tasks?job=double&state=QUEUED")
    page.wait_for_selector("body[data-live=on]")
    page.evaluate("window.notReloaded = true")
    assert page.locator("#task-list tbody tr").count() == 1
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        client.queue_task("double", n=7, countdown=3600)
    page.wait_for_function("document.querySelectorAll('#task-list tbody tr').length == 2")
    assert page.evaluate("window.notReloaded") is True


@pytest.mark.slow
def test_revoke_a_waiting_task_from_its_page(
    tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any
) -> None:
    url = start_dashboard()
    page.goto(f"{url}/tasks/{tasks['later']}")
    assert page.locator("#retry").count() == 0
    page.click("#revoke")
    page.wait_for_selector(".flash.ok:has-text('revoked: it will not run')")
    assert page.locator(".summary .state.revoked").count() == 1
    assert "revoked by an operator" in page.inner_text("#error")
    page.click("#retry")  # and back
    page.wait_for_selector(".summary .state.queued, .summary .state.success")


@pytest.mark.slow
def test_a_read_only_dashboard_shows_no_actions_and_refuses_them(
    tasks: dict[str, str], start_dashboard: Callable[..., str], page: Any
) -> None:
    url = start_dashboard("--read-only")
    page.goto(f"{url}/tasks/{tasks['broken']}")
    assert page.locator(".badge.read-only").count() == 1
    assert "OSError: disk full" in page.inner_text("#error")
    assert page.locator("#retry").count() == 0 and page.locator("form").count() == 0
    response = page.request.post(f"{url}/tasks/{tasks['broken']}/retry", form={"csrf": "x"})
    assert response.status == 403 and "read-only" in response.text()
    page.reload()
    assert page.locator(".summary .state.failure").count() == 1


@pytest.mark.slow
def test_actions_refuse_cross_site_requests(
    tasks: dict[str, str], start_dashboard: Callable[..., str]
) -> None:
    url = start_dashboard()
    task_url = f"{url}/tasks/{tasks['broken']}"
    status, headers, body = http(task_url)
    assert status == 200
    cookie = headers["set-cookie"].split(";")[0]
    token = cookie.split("=", 1)[1]
    assert f'name="csrf" value="{token}"' in body
    retry = task_url + "/retry"
    for data, extra, why in [
        ({}, {"Cookie": cookie}, "CSRF token"),
        ({"csrf": token}, {}, "CSRF token"),  # a foreign page cannot send the cookie
        ({"csrf": "guess"}, {"Cookie": cookie}, "CSRF token"),
        ({"csrf": token}, {"Cookie": cookie, "Origin": "http://evil.example"}, "cross-site"),
    ]:
        status, _, body = http(retry, data=data, headers=extra)
        assert status == 403 and why in body, (data, extra, body)
    assert "FAILURE" in http(task_url)[2]
    status, headers, _ = http(retry, data={"csrf": token}, headers={"Cookie": cookie})
    assert status == 303 and "queued+again" in headers["location"]


@pytest.mark.slow
def test_a_token_guards_every_page_and_loopback_is_the_default(
    dsn: str, start_dashboard: Callable[..., str]
) -> None:
    url = start_dashboard("--token", "s3cret")
    status, headers, _ = http(url + "/")
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    basic = base64.b64encode(b"ops:s3cret").decode()
    assert http(url + "/", headers={"Authorization": f"Basic {basic}"})[0] == 200
    assert http(url + "/events", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert http(url + "/tasks", headers={"Authorization": "Bearer s3cret"})[0] == 200
    exposed = run_cli(["pgqueue", "dashboard", "--host", "0.0.0.0"], dsn)
    assert exposed.returncode == 2 and "without authentication" in exposed.stderr


@pytest.mark.slow
def test_the_dsn_password_is_never_shown(dsn: str, start_dashboard: Callable[..., str]) -> None:
    url = start_dashboard(dsn_=dsn + " password=hunter2")
    for path in ("/", "/tasks", "/workers", "/schedules", "/tasks/nope"):
        body = http(url + path)[2]
        assert "hunter2" not in body and "password=***" in body, path

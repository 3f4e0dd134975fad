"""Issue 14, the dashboard's workflow graph: a task's page draws its parents and children
(states, links to their pages), and the live update redraws it as they end, in headless
Chromium against a real ``pgqueue dashboard`` process and a real worker."""

# ruff: noqa: F811  (the fixtures of tests/test_dashboard.py, imported, are parameters here)

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pgqueue import Call, TaskBackend

from .test_dashboard import browser, page, start_dashboard  # noqa: F401  (fixtures)
from .test_dashboard import pytestmark as dashboard_marks

pytestmark = dashboard_marks

OPS_JOBS = "tests.support.ops_jobs"


def node(page: Any, role: str) -> list[tuple[str | None, str | None]]:
    """(id, state) of each box of the graph with ``role`` (parent, task, child)."""
    boxes = page.locator(f"#workflow svg a.node.{role}")
    return [
        (boxes.nth(i).get_attribute("data-id"), boxes.nth(i).get_attribute("data-state"))
        for i in range(boxes.count())
    ]


@pytest.mark.slow
def test_a_task_page_draws_its_workflow_and_redraws_it_live(
    dsn: str, start_dashboard: Callable[..., str], page: Any, start_worker: Any
) -> None:
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        first, middle, last = client.chain(*[Call("double", {"n": n}) for n in (1, 2, 3)])
        lone = client.queue_task("double", n=4, countdown=3600)
    url = start_dashboard()

    # A task in no workflow has no graph.
    page.goto(f"{url}/tasks/{lone}")
    assert page.locator("#workflow").count() == 0

    page.goto(f"{url}/tasks/{middle}")
    page.wait_for_selector("body[data-live=on]")
    page.evaluate("window.notReloaded = true")
    assert node(page, "parent") == [(first, "QUEUED")]
    assert node(page, "task") == [(middle, "QUEUED")]
    assert node(page, "child") == [(last, "QUEUED")]
    assert "1 parent, 1 child; waiting for 1" in page.inner_text("#workflow")
    assert page.locator("#workflow svg line").count() == 2

    # The chain runs: each box turns SUCCESS on this page, pushed by LISTEN/NOTIFY.
    start_worker(task_paths=[OPS_JOBS], poll_timeout=0.5)
    page.wait_for_selector(f"#workflow a.node.child[data-id='{last}'][data-state=SUCCESS]")
    assert node(page, "parent") == [(first, "SUCCESS")]
    assert node(page, "task") == [(middle, "SUCCESS")]
    assert page.evaluate("window.notReloaded") is True

    # A box is a link to its task's page, whose graph has the task before it as parent.
    page.locator(f"#workflow a.node.child[data-id='{last}']").click()
    page.wait_for_url(f"**/tasks/{last}")
    assert node(page, "parent") == [(middle, "SUCCESS")]
    assert node(page, "child") == []


@pytest.mark.slow
def test_a_callback_with_many_parents_draws_some_and_counts_the_rest(
    dsn: str, start_dashboard: Callable[..., str], page: Any
) -> None:
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        members = [Call("double", {"n": n}) for n in range(15)]
        queued = client.group(members, then=Call("double", {"n": 0}))
        callback, revoked = queued.then, queued.ids[0]
        assert callback is not None and revoked is not None
        client.revoke(revoked)  # the callback ends REVOKED with it
    url = start_dashboard()
    page.goto(f"{url}/tasks/{callback}")
    parents = node(page, "parent")
    assert len(parents) == 12
    assert parents[0] == (revoked, "REVOKED")
    assert node(page, "task") == [(callback, "REVOKED")]
    assert page.inner_text("#more-parents") == "and 3 more parents: 3 QUEUED"

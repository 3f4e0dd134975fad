"""The integration examples run as documented: examples/fastapi_app.py served by FastAPI's
test client, examples/sqlalchemy_script.py as a subprocess; a real worker runs their tasks."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from fastapi.testclient import TestClient

import pgqueue
from examples.fastapi_app import CREDIT_LIMIT_CENTS, create_app

from .callers import sqlalchemy_url
from .conftest import ROOT, cli_env, sql


def test_fastapi_endpoint_writes_the_order_and_queues_its_task_together(
    dsn: str, start_worker: Any
) -> None:
    url = sqlalchemy_url(dsn)
    with TestClient(create_app(url)) as client:
        refused = client.post(
            "/orders", json={"item": "yacht", "amount_cents": CREDIT_LIMIT_CENTS + 1}
        )
        assert refused.status_code == 402
        assert sql(dsn, "SELECT count(*) AS n FROM orders") == [{"n": 0}]
        assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 0}]

        placed = client.post("/orders", json={"item": "teapot", "amount_cents": 2500})
        assert placed.status_code == 201, placed.text
        body = placed.json()
        assert client.get(f"/tasks/{body['task_id']}").json()["status"] == "QUEUED"

        start_worker(task_paths=["examples.orders"], queues=["orders"], poll_timeout=30.0)
        with pgqueue.TaskBackend(dsn, task_paths=["examples.orders"]) as backend:
            task = backend.wait_for_task(body["task_id"], timeout=20)
        assert task.status == pgqueue.states.SUCCESS
        assert client.get(f"/tasks/{task.id}").json() == {
            "id": task.id,
            "status": "SUCCESS",
            "result": f"order {body['order_id']} confirmed",
        }
    assert sql(dsn, "SELECT item, status FROM orders") == [
        {"item": "teapot", "status": "confirmed"}
    ]


def test_sqlalchemy_script_commits_one_order_and_rolls_back_the_other(dsn: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.sqlalchemy_script"],
        env=cli_env(None, DATABASE_URL=sqlalchemy_url(dsn)),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("committed order 1 with task ")
    assert lines[1].startswith("rolled back order 2; task ") and lines[1].endswith("exists: False")
    assert lines[2] == "orders: teapot"
    tasks = sql(dsn, "SELECT name, queue, priority, kwargs FROM pgqueue.task")
    assert tasks == [
        {"name": "confirm_order", "queue": "orders", "priority": 10, "kwargs": {"order_id": 1}}
    ]

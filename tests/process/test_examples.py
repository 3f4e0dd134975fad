"""The integration examples run as documented: examples/fastapi_app.py served by uvicorn,
examples/sqlalchemy_script.py as a subprocess; a real worker runs their tasks."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import pgqueue
from examples.fastapi_app import CREDIT_LIMIT_CENTS
from tests.support.callers import sqlalchemy_url
from tests.support.fixtures import ROOT, cli_env, sql


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def shop_server(dsn: str) -> Iterator[str]:
    """examples/fastapi_app.py served by uvicorn in its own process; yields its base URL."""
    port = free_port()
    app = "examples.fastapi_app:create_app"
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", app, "--port", str(port)],
        env=cli_env(None, DATABASE_URL=sqlalchemy_url(dsn)),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/tasks/{uuid.uuid4()}", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "the example app did not start"
                time.sleep(0.2)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


@pytest.mark.slow
def test_fastapi_endpoint_writes_the_order_and_queues_its_task_together(
    dsn: str, shop_server: str, start_worker: Any
) -> None:
    with httpx.Client(base_url=shop_server, timeout=10) as client:
        body = {"item": "yacht", "amount_cents": CREDIT_LIMIT_CENTS + 1}
        refused = client.post("/orders", json=body)
        assert refused.status_code == 402
        assert sql(dsn, "SELECT count(*) AS n FROM orders") == [{"n": 0}]
        assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 0}]

        placed = client.post("/orders", json={"item": "teapot", "amount_cents": 2500})
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert client.get(f"/tasks/{order['task_id']}").json()["status"] == "QUEUED"

        start_worker(task_paths=["examples.orders"], queues=["orders"], poll_timeout=30.0)
        with pgqueue.TaskBackend(dsn, task_paths=["examples.orders"]) as backend:
            task = backend.wait_for_task(order["task_id"], timeout=20)
        assert task.status == pgqueue.states.SUCCESS
        assert client.get(f"/tasks/{task.id}").json() == {
            "id": task.id,
            "status": "SUCCESS",
            "result": f"order {order['order_id']} confirmed",
        }
    assert sql(dsn, "SELECT item, status FROM orders") == [
        {"item": "teapot", "status": "confirmed"}
    ]


@pytest.mark.slow
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

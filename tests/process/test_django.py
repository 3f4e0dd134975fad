"""pgqueue.contrib.django in a real small Django project (tests/support/django_project) on the test
PostgreSQL: ``manage.py migrate`` creates pgqueue's schema, a task queued inside
``transaction.atomic()`` on Django's own connection commits or rolls back with the order, and
``manage.py pgqueue_worker`` runs it with the project loaded (the job uses the ORM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import cli_env, sql

pytest.importorskip("django", reason="Django is not installed (pip install -e '.[django]')")

PROJECT = Path(__file__).resolve().parents[1] / "support" / "django_project"


def manage(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=cli_env(None, SHOP_DATABASE_DSN=dsn),
        capture_output=True,
        text=True,
        timeout=90,
    )


def tasks(dsn: str) -> list[dict[str, Any]]:
    return sql(
        dsn, "SELECT name, queue, kwargs, state FROM pgqueue.task_state ORDER BY time_queued"
    )


@pytest.mark.timeout(300)
def test_django_project_enqueues_in_its_transactions_and_runs_a_worker(empty_dsn: str) -> None:
    dsn = empty_dsn
    migrated = manage(dsn, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert tasks(dsn) == []  # pgqueue's schema exists, with its views

    placed = manage(dsn, "place_order", "book")
    assert placed.returncode == 0, placed.stderr
    order_id = sql(dsn, "SELECT id FROM shop_order WHERE item = 'book'")[0]["id"]
    assert tasks(dsn) == [
        {
            "name": "send_receipt",
            "queue": "shop",
            "kwargs": {"order_id": order_id},
            "state": "QUEUED",
        }
    ]

    failed = manage(dsn, "place_order", "bomb", "--fail")
    assert failed.returncode != 0 and "payment declined" in failed.stderr
    assert sql(dsn, "SELECT count(*) AS n FROM shop_order") == [{"n": 1}]
    assert len(tasks(dsn)) == 1  # the rolled-back order's task is gone with it

    worker = manage(dsn, "pgqueue_worker", "--burst")
    assert worker.returncode == 0, worker.stderr
    assert [task["state"] for task in tasks(dsn)] == ["SUCCESS"]
    assert sql(dsn, "SELECT receipt FROM shop_order") == [{"receipt": "receipt for book"}]

    # --processes: each child is a fresh `python -m pgqueue._worker_cli`, set up for Django
    # by the command before it imports the ORM-using jobs.
    assert manage(dsn, "place_order", "pen").returncode == 0
    supervised = manage(dsn, "pgqueue_worker", "--burst", "--processes", "1")
    assert supervised.returncode == 0, supervised.stderr
    assert sql(dsn, "SELECT receipt FROM shop_order WHERE item = 'pen'") == [
        {"receipt": "receipt for pen"}
    ]


def test_worker_command_takes_the_database_from_the_settings(empty_dsn: str) -> None:
    refused = manage(empty_dsn, "pgqueue_worker", "--dsn", "postgresql://elsewhere/db")
    assert refused.returncode != 0
    assert "--dsn comes from settings.PGQUEUE" in refused.stderr
    assert "Traceback" not in refused.stderr

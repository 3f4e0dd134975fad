"""F28 migrations behind readers, and queue names with a comma (issue 12, item 9).

A migration waits for each lock at most ``lock_timeout`` and retries, so a long reader never
makes it queue every later reader behind itself; the SQL that ``pgqueue migrate --sql``
prints sets the same limit. Queue names hold no comma, refused the same way everywhere.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import psycopg
import pytest

from pgqueue import TaskBackend
from pgqueue import _schema as schema
from pgqueue._errors import ConfigurationError, SchemaError
from pgqueue._schema import SCHEMA_REVISION, alembic_config
from pgqueue._values import check_queue
from tests.support.fixtures import TEST_JOBS, bin_path, cli_env, run_cli, sql

#: Seconds per test (subprocesses, real workers): not in the quick loop.
pytestmark = pytest.mark.slow

PREVIOUS = "pgqueue_0004_operations"


def downgrade(dsn: str, revision: str) -> None:
    """Take the schema back to ``revision`` (nobody else connected)."""
    from alembic import command

    cfg = alembic_config("pgqueue")
    with schema._sqlalchemy_connection(dsn) as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


class Reader(threading.Thread):
    """Reads the task table every 50 ms on its own connection; keeps the longest read."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.longest = 0.0
        self.reads = 0
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '30s'")
            while not self.done.is_set():
                started = time.monotonic()
                conn.execute("SELECT count(*) FROM pgqueue.task").fetchone()
                self.longest = max(self.longest, time.monotonic() - started)
                self.reads += 1
                time.sleep(0.05)


def test_migration_behind_a_reader_blocks_no_one_and_retries(dsn: str) -> None:
    """A session reads a view in an open transaction for 7 s while `pgqueue migrate` upgrades
    (its new revision alters the task table): other sessions' reads never wait much longer
    than the 2 s lock_timeout (they waited the whole 7 s), and the migration retries until
    the reader lets go, then succeeds."""
    downgrade(dsn, PREVIOUS)
    reader = Reader(dsn)
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT count(*) FROM pgqueue.task_state").fetchone()  # ACCESS SHARE
        migrating = subprocess.Popen(
            [bin_path("pgqueue"), "migrate"],
            env=cli_env(dsn),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        reader.start()
        time.sleep(7.0)
        holder.rollback()
    out, err = migrating.communicate(timeout=60)
    reader.done.set()
    reader.join(35)
    assert reader.longest < 3.0, f"a reader waited {reader.longest:.1f}s behind the migration"
    assert reader.reads > 20
    assert migrating.returncode == 0, err
    assert "trying again" in err and "lock timeout" in err
    assert SCHEMA_REVISION in out
    revisions = {r["revision"] for r in sql(dsn, "SELECT revision FROM pgqueue.schema_version")}
    assert SCHEMA_REVISION in revisions


def test_migration_gives_up_with_a_clear_error(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the reader never lets go, the migration stops after its attempts with an error
    that says why, and leaves the schema as it was."""
    downgrade(dsn, PREVIOUS)
    monkeypatch.setattr(schema, "MIGRATION_ATTEMPTS", 2)
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT count(*) FROM pgqueue.task_state").fetchone()
        with pytest.raises(SchemaError, match="could not get its locks in 2 attempts"):
            schema.migrate(dsn, "pgqueue")
        holder.rollback()
    revisions = {r["revision"] for r in sql(dsn, "SELECT revision FROM pgqueue.schema_version")}
    assert SCHEMA_REVISION not in revisions


def test_printed_sql_limits_lock_waits() -> None:
    printed = run_cli(["pgqueue", "migrate", "--sql"], None)
    assert printed.returncode == 0, printed.stderr
    head = printed.stdout[: printed.stdout.index("CREATE SCHEMA")]
    assert "SET LOCAL lock_timeout = '2s';" in head
    assert "run the script again" in head


def test_queue_names_with_a_comma_are_refused_everywhere(dsn: str, backend: Any) -> None:
    """``--queues a,b`` splits on commas, so a queue named ``a,b`` could be filled but never
    consumed: Python, the CLI, the SQL function and plain SQL all refuse it."""
    with pytest.raises(ConfigurationError, match="must not contain a comma"):
        check_queue("a,b")
    with pytest.raises(ConfigurationError, match="must not contain a comma"):
        backend.queue_task("add", a=1, b=2, queue="a,b")
    with TaskBackend(dsn, task_paths=[TEST_JOBS]) as client, pytest.raises(ConfigurationError):
        client.queue_tasks("add", [{"a": 1, "b": 2}], queue="x,")
    cli = run_cli(
        ["pgqueue", "queue", "--task-paths", TEST_JOBS, "--queue", "a,b", "add", "a=1", "b=2"],
        dsn,
    )
    assert cli.returncode != 0 and "must not contain a comma" in cli.stderr
    assert "Traceback" not in cli.stderr
    worker = run_cli(["pgqueue-worker", "--task-paths", TEST_JOBS, "--name", "a,b", "--burst"], dsn)
    assert worker.returncode != 0 and "must not contain a comma" in worker.stderr
    with pytest.raises(psycopg.errors.CheckViolation, match="task_queue_no_comma"):
        sql(dsn, "SELECT pgqueue.queue_task('add', '{}', 'a,b')")
    with pytest.raises(psycopg.errors.CheckViolation):
        sql(dsn, "INSERT INTO pgqueue.task (name, queue) VALUES ('add', ',')")
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 0}]

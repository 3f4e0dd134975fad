"""Test fixtures: a real PostgreSQL and a fresh, migrated database per test.

The server is ``$PGQUEUE_TEST_DSN`` when set (a superuser DSN, e.g. the machine's PostgreSQL),
else an embedded server started once for the session. Every test gets its own database,
cloned from a template migrated once, so tests never see each other's tasks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo

from pgqueue import TaskBackend, Worker
from pgqueue._db import connect, quote_ident
from pgqueue._embedded import EmbeddedPostgres
from pgqueue._schema import migrate
from tests.support.guards import LEAK_GRACE

ROOT = Path(__file__).resolve().parents[2]
TEST_JOBS = "tests.support.jobs"


class Server:
    """The PostgreSQL server the tests use."""

    def __init__(self) -> None:
        given = os.environ.get("PGQUEUE_TEST_DSN")
        self.embedded: EmbeddedPostgres | None = None
        if given:
            self.admin_dsn = given
        else:
            self._tmp = tempfile.mkdtemp(prefix="pgqueue-test-")
            self.embedded = EmbeddedPostgres(
                Path(self._tmp) / "pgdata", delete=True, settings={"max_connections": "400"}
            )
            self.admin_dsn = self.embedded.dsn
        self.template = f"pgqueue_template_{os.getpid()}"

    def dsn_for(self, database: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=database)

    def create_database(self, name: str, template: str | None = None) -> str:
        with connect(self.admin_dsn) as conn:
            clause = f" TEMPLATE {quote_ident(template)}" if template else ""
            conn.execute(f"CREATE DATABASE {quote_ident(name)}{clause}")
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        with connect(self.admin_dsn) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def connections(self, database: str) -> list[dict[str, Any]]:
        """The sessions connected to ``database`` (none of them this check's own)."""
        with connect(self.admin_dsn) as conn:
            return conn.execute(
                "SELECT pid, application_name, state, left(query, 120) AS query"
                " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()

    def drop_unused_database(self, name: str) -> None:
        """Drop a test's database; fail the test if it left connections to it open (after
        :data:`~tests.support.guards.LEAK_GRACE` seconds)."""
        deadline = time.monotonic() + LEAK_GRACE
        left = self.connections(name)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.connections(name)
        self.drop_database(name)
        assert not left, f"the test left {len(left)} connection(s) to its database: {left}"

    def restart(self) -> None:
        if self.embedded is None:
            pytest.skip("restarting the server needs the embedded server (PGQUEUE_TEST_DSN set)")
        self.embedded.restart()

    def close(self) -> None:
        self.drop_database(self.template)
        if self.embedded is not None:
            self.embedded.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    server = Server()
    server.drop_database(server.template)
    migrate(server.create_database(server.template), "pgqueue")
    yield server
    server.close()


@pytest.fixture
def empty_dsn(pg_server: Server) -> Iterator[str]:
    """A database with no pgqueue schema at all."""
    name = f"pgqueue_test_{uuid.uuid4().hex[:12]}"
    yield pg_server.create_database(name)
    pg_server.drop_unused_database(name)


@pytest.fixture
def dsn(pg_server: Server) -> Iterator[str]:
    """A fresh database with pgqueue's schema."""
    name = f"pgqueue_test_{uuid.uuid4().hex[:12]}"
    yield pg_server.create_database(name, template=pg_server.template)
    pg_server.drop_unused_database(name)


@pytest.fixture
def backend(dsn: str) -> Iterator[TaskBackend]:
    with TaskBackend(dsn, task_paths=[TEST_JOBS]) as client:
        yield client


@pytest.fixture
def client_jobs() -> list[str]:
    """The task paths :func:`client` knows: the test jobs, unless a module (or a conftest)
    overrides this fixture."""
    return [TEST_JOBS]


@pytest.fixture
def client(dsn: str, client_jobs: list[str]) -> Iterator[TaskBackend]:
    """A :class:`TaskBackend` on the test database that knows ``client_jobs``."""
    with TaskBackend(dsn, task_paths=client_jobs) as backend:
        yield backend


def sql(dsn: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    """Run one statement on ``dsn`` and return its rows (empty for statements without)."""
    with connect(dsn) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


class WorkerThread:
    """A :class:`Worker` running in a thread of the test process."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.exit_code = self.worker.run()
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = 20) -> None:
        self.worker.stop()
        self.join(timeout)

    def join(self, timeout: float = 20) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def start_worker(dsn: str) -> Iterator[Any]:
    """``start_worker(**options)`` runs a Worker on the test database in a thread."""
    running: list[WorkerThread] = []

    def start(**options: Any) -> WorkerThread:
        options.setdefault("task_paths", [TEST_JOBS])
        options.setdefault("poll_timeout", 30.0)
        options.setdefault("lease", 5.0)
        handle = WorkerThread(Worker(options.pop("dsn", dsn), **options))
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if handle.thread.is_alive():
            handle.stop()


def cli_env(dsn: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for running pgqueue's commands as subprocesses in the test database."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("PGQUEUE_DSN", None)
    if dsn is not None:
        env["PGQUEUE_DSN"] = dsn
    env.update(extra)
    return env


def bin_path(command: str) -> str:
    """Path of a console script installed beside this interpreter."""
    return str(Path(sys.executable).parent / command)


def run_cli(args: list[str], dsn: str | None, timeout: float = 60, **env: str) -> Any:
    """Run a pgqueue console script; return the CompletedProcess (text output)."""
    return subprocess.run(
        [bin_path(args[0]), *args[1:]],
        env=cli_env(dsn, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )

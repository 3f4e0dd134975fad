"""Helpers of the crash-safety tests: worker subprocesses, waiting, reading rows."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pgqueue import TaskBackend
from tests.conftest import ROOT, bin_path, cli_env, sql

CRASH_JOBS = "tests.crash_jobs"
T = TypeVar("T")


def make_runs_table(dsn: str) -> None:
    """The table :mod:`tests.crash_jobs` records each execution in (``at`` it started,
    ``ended_at`` its body ended, when it records that)."""
    sql(
        dsn,
        "CREATE TABLE crash_runs (task_id uuid, attempt int, worker text, pid int, note text, "
        "at timestamptz DEFAULT clock_timestamp(), ended_at timestamptz)",
    )


def runs(dsn: str, task_id: str) -> list[dict[str, Any]]:
    """The recorded executions of one task, oldest first."""
    return sql(dsn, "SELECT * FROM crash_runs WHERE task_id = %s ORDER BY at", (task_id,))


def task_row(dsn: str, task_id: str) -> dict[str, Any]:
    """The task's row, as stored."""
    return sql(dsn, "SELECT * FROM pgqueue.task WHERE id = %s", (task_id,))[0]


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def terminate_backends(dsn: str, application_name: str) -> int:
    """``pg_terminate_backend`` every connection of ``application_name`` to this database,
    waiting (up to 5 s each) until they have exited; return how many there were."""
    rows = sql(
        dsn,
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) AS n "
        "FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
        (application_name,),
    )
    return int(rows[0]["n"])


def wait_status(dsn: str, task_id: str, statuses: set[int], timeout: float) -> dict[str, Any]:
    """Wait until the task is in one of ``statuses``; return its row."""
    return wait_until(
        lambda: (row := task_row(dsn, task_id))["status"] in statuses and row,
        timeout,
        f"task {task_id} to reach status {sorted(statuses)}",
    )


class WorkerProcess:
    """A real ``pgqueue-worker`` process; its stderr goes to a file read by :attr:`log`."""

    def __init__(
        self,
        dsn: str,
        *args: str,
        env: dict[str, str] | None = None,
        program: list[str] | None = None,
    ) -> None:
        handle, path = tempfile.mkstemp(prefix="pgqueue-worker-", suffix=".log")
        os.close(handle)
        self.log_path = Path(path)
        self._log = self.log_path.open("wb")
        command = [
            *(program or [bin_path("pgqueue-worker")]),
            "--task-paths",
            CRASH_JOBS,
            "--poll-timeout",
            "30",
            *args,
        ]
        self.process = subprocess.Popen(
            command,
            env=cli_env(dsn, **(env or {})),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, kind: signal.Signals) -> None:
        self.process.send_signal(kind)

    def wait(self, timeout: float) -> int:
        """The exit status; fails the test (showing the log) if it does not exit in time."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit within {timeout}s:\n{self.log}") from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()
        self.log_path.unlink(missing_ok=True)


@contextmanager
def worker_processes() -> Iterator[Callable[..., WorkerProcess]]:
    """``start(dsn, *args)`` starts worker processes, all killed at the end."""
    started: list[WorkerProcess] = []

    def start(dsn: str, *args: str) -> WorkerProcess:
        started.append(WorkerProcess(dsn, *args))
        return started[-1]

    try:
        yield start
    finally:
        for proc in started:
            proc.close()


def live_workers(dsn: str) -> list[dict[str, Any]]:
    """Registered workers that have not stopped."""
    return sql(dsn, "SELECT * FROM pgqueue.worker WHERE stopped_at IS NULL ORDER BY started_at")


@pytest.fixture
def runs_dsn(dsn: str) -> str:
    """A fresh migrated database with the ``crash_runs`` table."""
    make_runs_table(dsn)
    return dsn


@pytest.fixture
def client(runs_dsn: str) -> Iterator[TaskBackend]:
    """A :class:`TaskBackend` on ``runs_dsn`` that knows the crash tests' jobs."""
    with TaskBackend(runs_dsn, task_paths=[CRASH_JOBS]) as backend:
        yield backend


@pytest.fixture
def procs() -> Iterator[Callable[..., WorkerProcess]]:
    """``procs(dsn, *args)`` starts a ``pgqueue-worker`` process, killed after the test."""
    with worker_processes() as start:
        yield start

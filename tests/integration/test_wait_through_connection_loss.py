"""A client waiting for a task while its connections die: ``wait_for_task`` and
``await_task`` must return once the task ends, whatever happened to the database meanwhile
(F07 from the client's side: terminated backends, a full restart)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pgqueue import TaskBackend, states
from tests.support.callers import run_async
from tests.support.fixtures import TEST_JOBS, Server, sql


def _terminate_clients(dsn: str) -> int:
    rows = sql(
        dsn,
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
        "WHERE application_name LIKE 'pgqueue-client%%' AND datname = current_database()",
    )
    return int(rows[0]["n"])


class Waiter:
    """``wait_for_task`` (or ``await_task``) in a thread; keeps the outcome."""

    def __init__(self, backend: TaskBackend, task_id: str, use_async: bool = False) -> None:
        self.outcome: Any = None
        self.thread = threading.Thread(
            target=self._run, args=(backend, task_id, use_async), daemon=True
        )
        self.thread.start()

    def _run(self, backend: TaskBackend, task_id: str, use_async: bool) -> None:
        try:
            if use_async:
                self.outcome = run_async(backend.await_task(task_id, timeout=60))
            else:
                self.outcome = backend.wait_for_task(task_id, timeout=60)
        except BaseException as exc:
            self.outcome = exc

    def result(self, timeout: float = 60) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the waiter is still waiting"
        return self.outcome


def _finish_by_hand(dsn: str, task_id: str) -> None:
    sql(
        dsn,
        "UPDATE pgqueue.task SET status = 1, time_started = now(), time_ended = now(), "
        "result = '3'::jsonb WHERE id = %s",
        (task_id,),
    )


@pytest.mark.slow
def test_wait_survives_its_backends_being_terminated(dsn: str) -> None:
    with TaskBackend(dsn, task_paths=[TEST_JOBS]) as backend:
        task_id = backend.queue_task("add", a=1, b=2)
        assert task_id is not None
        waiters = [Waiter(backend, task_id), Waiter(backend, task_id, use_async=True)]
        time.sleep(1.0)  # both are listening now
        assert _terminate_clients(dsn) >= 2  # the pool's and the listener's at least
        time.sleep(0.5)
        _finish_by_hand(dsn, task_id)
        for waiter in waiters:
            task = waiter.result()
            assert not isinstance(task, BaseException), repr(task)
            assert task.status == states.SUCCESS


@pytest.mark.slow
def test_wait_survives_a_database_restart(pg_server: Server, dsn: str) -> None:
    with TaskBackend(dsn, task_paths=[TEST_JOBS]) as backend:
        task_id = backend.queue_task("add", a=1, b=2)
        assert task_id is not None
        waiters = [Waiter(backend, task_id), Waiter(backend, task_id, use_async=True)]
        time.sleep(1.0)
        pg_server.restart()
        _finish_by_hand(dsn, task_id)
        for waiter in waiters:
            task = waiter.result()
            assert not isinstance(task, BaseException), repr(task)
            assert task.status == states.SUCCESS

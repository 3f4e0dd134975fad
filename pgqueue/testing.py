"""pytest plugin for applications that use pgqueue (loaded through the ``pytest11`` entry
point once pgqueue is installed; nothing starts until a test asks for a fixture).

Fixtures:

* ``pgqueue_dsn``: a fresh database with pgqueue's schema for each test, cloned from a
  template migrated once per session, on ``$PGQUEUE_TEST_DSN`` (a superuser DSN) when set,
  else on an embedded PostgreSQL started for the session.
* ``pgqueue_task_paths``: the modules of the application's jobs, from the ini option
  ``pgqueue_task_paths`` (override the fixture to compute them).
* ``pgqueue_backend``: a :class:`TaskBackend` on ``pgqueue_dsn`` with those jobs.
* ``pgqueue_tasks``: a :class:`QueueTester`: ``assert_queued(job, **kwargs)``,
  ``queued(job)`` and ``drain()``, which claims and runs the queued tasks in this process
  with a real :class:`Worker` in burst mode, so retries, locks and outcomes are production's.
* ``pgqueue_eager``: an :class:`EagerBackend`, which runs the tasks it queues at once (the
  same burst worker), for code that should see a job's effects right after enqueue.

Worked example (``pytest.ini``: ``pgqueue_task_paths = shop.jobs``)::

    def test_receipt(pgqueue_backend, pgqueue_tasks):
        place_order(pgqueue_backend, order_id=7)
        pgqueue_tasks.assert_queued(send_receipt, order_id=7)
        [task] = pgqueue_tasks.drain()
        assert task.status_string() == "SUCCESS"
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo

from ._backend import TaskBackend
from ._bulk import QueuedTasks
from ._db import connect, quote_ident
from ._embedded import EmbeddedPostgres
from ._jobs import Job
from ._ops import Operations
from ._schema import migrate
from ._task import Task
from .worker import Worker

#: The environment variable naming an existing server (a superuser DSN) for the tests.
TEST_DSN_ENV = "PGQUEUE_TEST_DSN"

#: States of a task that has not run yet (``queued`` and ``assert_queued`` look at these).
WAITING = ("QUEUED", "RETRY")


class TestServer:
    """The PostgreSQL server of a test session: ``$PGQUEUE_TEST_DSN``, else an embedded one;
    it hands out fresh databases cloned from a template migrated once."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        given = os.environ.get(TEST_DSN_ENV)
        self.embedded: EmbeddedPostgres | None = None
        if given:
            self.admin_dsn = given
        else:
            data = Path(tempfile.mkdtemp(prefix="pgqueue-pytest-")) / "pgdata"
            self.embedded = EmbeddedPostgres(data, delete=True)
            self.admin_dsn = self.embedded.dsn
        self.template = f"pgqueue_template_{uuid.uuid4().hex[:12]}"
        migrate(self._create(self.template), "pgqueue")

    def _create(self, name: str, template: str | None = None) -> str:
        with connect(self.admin_dsn) as conn:
            clause = f" TEMPLATE {quote_ident(template)}" if template else ""
            conn.execute(f"CREATE DATABASE {quote_ident(name)}{clause}")
        return make_conninfo(self.admin_dsn, dbname=name)

    def drop(self, name: str) -> None:
        """Drop database ``name`` (its connections are terminated)."""
        with connect(self.admin_dsn) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def database(self) -> tuple[str, str]:
        """A new database with pgqueue's schema: ``(name, dsn)``."""
        name = f"pgqueue_test_{uuid.uuid4().hex[:12]}"
        return name, self._create(name, self.template)

    def close(self) -> None:
        """Drop the template; stop the embedded server, if any."""
        self.drop(self.template)
        if self.embedded is not None:
            self.embedded.stop()


def run_queued(backend: TaskBackend, **worker_options: Any) -> list[Task]:
    """Claim and run every task of ``backend``'s queues that is due, in this process, with a
    :class:`Worker` in burst mode (``worker_options`` go to it); return the tasks that were
    waiting before and have finished since, as they ended. Tasks the jobs queue meanwhile run
    too; tasks not yet due (countdown, retry backoff) stay queued, as in production."""
    ops = Operations(backend)
    before = [row["id"] for row in ops.list_tasks(states_=WAITING, limit=10000)]
    options: dict[str, Any] = {"poll_timeout": 0.2, "shutdown_timeout": 5.0}
    options.update(worker_options)
    Worker(
        backend.dsn,
        name=backend.name,
        schema=backend.schema,
        registry=backend.registry,
        burst=True,
        **options,
    ).run()
    return [task for task in backend.get_tasks(before) if task.done()]


class QueueTester:
    """What the ``pgqueue_tasks`` fixture gives a test: look at and run the queued tasks of
    ``backend``."""

    def __init__(self, backend: TaskBackend) -> None:
        self.backend = backend

    def queued(self, job: Job | str | None = None) -> list[Task]:
        """The tasks (of ``job``, a job or its name, else all) waiting to run: QUEUED or
        RETRY, oldest first."""
        names = [job.name if isinstance(job, Job) else job] if job is not None else []
        rows = Operations(self.backend).list_tasks(states_=WAITING, jobs=names, limit=10000)
        tasks = self.backend.get_tasks([row["id"] for row in rows])
        return sorted(tasks, key=lambda task: (task.time_queued is None, task.time_queued))

    def assert_queued(self, job: Job | str, /, **kwargs: Any) -> Task:
        """The waiting task of ``job`` whose kwargs include ``kwargs`` (all of them when none
        are given); raises ``AssertionError`` listing the waiting tasks of the job when none
        matches or when several do."""
        matches = [task for task in self.queued(job) if _includes(task.kwargs, kwargs)]
        if len(matches) != 1:
            name = job.name if isinstance(job, Job) else job
            waiting = [task.kwargs for task in self.queued(job)] or "none"
            raise AssertionError(
                f"expected one queued task of job {name!r} with {kwargs}, found "
                f"{len(matches)}; queued tasks of {name!r}: {waiting}"
            )
        return matches[0]

    def assert_not_queued(self, job: Job | str, /, **kwargs: Any) -> None:
        """Raise ``AssertionError`` when a waiting task of ``job`` has these kwargs."""
        found = [task for task in self.queued(job) if _includes(task.kwargs, kwargs)]
        if found:
            raise AssertionError(f"unexpected queued tasks: {[task.info() for task in found]}")

    def drain(self, **worker_options: Any) -> list[Task]:
        """Run the due tasks now, through a burst :class:`Worker` in this process: see
        :func:`run_queued`."""
        return run_queued(self.backend, **worker_options)


class EagerBackend(TaskBackend):
    """A :class:`TaskBackend` that runs what it queues at once (:func:`run_queued`) when
    it is committed: tasks queued on the caller's ``connection=`` wait for :meth:`drain`,
    since no worker can see them before that transaction commits."""

    def queue_task(self, jobname: str, *args: Any, **kwargs: Any) -> str | None:
        """:meth:`TaskBackend.queue_task`, then run the queued tasks."""
        task_id = super().queue_task(jobname, *args, **kwargs)
        self._run_unless_in_transaction(kwargs)
        return task_id

    def queue_many(self, calls: Iterable[Any], **kwargs: Any) -> QueuedTasks:
        """:meth:`TaskBackend.queue_many`, then run the queued tasks (``queue_tasks`` and
        typed enqueue go through here or :meth:`queue_task`)."""
        result = super().queue_many(calls, **kwargs)
        self._run_unless_in_transaction(kwargs)
        return result

    def queue_tasks(self, jobname: str, kwargs_list: Iterable[Any], **kwargs: Any) -> QueuedTasks:
        """:meth:`TaskBackend.queue_tasks`, then run the queued tasks."""
        result = super().queue_tasks(jobname, kwargs_list, **kwargs)
        self._run_unless_in_transaction(kwargs)
        return result

    def drain(self) -> list[Task]:
        """Run the due tasks now (:func:`run_queued`)."""
        return run_queued(self)

    def _run_unless_in_transaction(self, kwargs: Mapping[str, Any]) -> None:
        if kwargs.get("connection") is None:
            run_queued(self)


def _includes(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    return all(key in have and have[key] == value for key, value in want.items())


# -- the plugin --------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ini option ``pgqueue_task_paths``: modules of the jobs the tests queue."""
    parser.addini(
        "pgqueue_task_paths",
        "modules that define the jobs the tests queue (as pgqueue-worker --task-paths)",
        type="args",
        default=[],
    )


@pytest.fixture(scope="session")
def pgqueue_server() -> Iterator[TestServer]:
    """The session's PostgreSQL server (``$PGQUEUE_TEST_DSN``, else embedded)."""
    server = TestServer()
    yield server
    server.close()


@pytest.fixture
def pgqueue_dsn(pgqueue_server: TestServer) -> Iterator[str]:
    """The DSN of a fresh database with pgqueue's schema, dropped after the test."""
    name, dsn = pgqueue_server.database()
    yield dsn
    pgqueue_server.drop(name)


@pytest.fixture
def pgqueue_task_paths(pytestconfig: pytest.Config) -> list[str]:
    """The modules of the application's jobs: the ini option ``pgqueue_task_paths``."""
    return list(pytestconfig.getini("pgqueue_task_paths"))


@pytest.fixture
def pgqueue_backend(pgqueue_dsn: str, pgqueue_task_paths: list[str]) -> Iterator[TaskBackend]:
    """A :class:`TaskBackend` on the test's database, knowing the application's jobs."""
    with TaskBackend(pgqueue_dsn, pgqueue_task_paths) as backend:
        yield backend


@pytest.fixture
def pgqueue_tasks(pgqueue_backend: TaskBackend) -> QueueTester:
    """Assert what was queued on ``pgqueue_backend`` and run it in this process."""
    return QueueTester(pgqueue_backend)


@pytest.fixture
def pgqueue_eager(pgqueue_dsn: str, pgqueue_task_paths: list[str]) -> Iterator[EagerBackend]:
    """An :class:`EagerBackend` on the test's database: what it queues runs at once."""
    backend = EagerBackend(pgqueue_dsn, pgqueue_task_paths)
    try:
        yield backend
    finally:
        backend.close()

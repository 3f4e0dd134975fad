"""The worker's services: one lifecycle for all (start, stop, wait, started, run_once), each
round callable without a thread, and what each reports through the callbacks it was given."""

from __future__ import annotations

import ast
import concurrent.futures
import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from pgqueue import TaskBackend, states
from pgqueue._consumer import TaskConsumer
from pgqueue._db import connect
from pgqueue._jobs import JobRegistry
from pgqueue._rescuer import rescue_lost_tasks
from pgqueue._retry import ExponentialBackoff, Revoked
from pgqueue._service import Service
from pgqueue._store import Store
from pgqueue.worker.claimer import Claimer
from pgqueue.worker.completer import Completer
from pgqueue.worker.executor import Executor
from pgqueue.worker.heartbeat import Heartbeat
from pgqueue.worker.maintenance import Maintenance
from pgqueue.worker.outcome import Outcome, outcome_of
from pgqueue.worker.pools import one_connection as _one_connection
from tests.support.crash import wait_until
from tests.support.fixtures import sql

ROOT = Path(__file__).resolve().parents[2]
TEST_JOBS = "tests.support.jobs"


class Rounds(Service):
    """Counts rounds; the third raises, the fifth ends the loop."""

    def __init__(self) -> None:
        super().__init__("test-rounds")
        self.rounds = 0
        self.errors: list[Exception] = []
        self.closed = 0

    def run_once(self) -> float | None:
        self.rounds += 1
        if self.rounds == 3:
            raise RuntimeError("third round")
        return None if self.rounds == 5 else 0.0

    def on_error(self, exc: Exception) -> float:
        self.errors.append(exc)
        return 0.0

    def close(self) -> None:
        self.closed += 1


def test_the_service_lifecycle_without_a_database() -> None:
    """A round that raises goes to on_error and the loop runs on; None ends it; started,
    wait and stop (twice, and from before start) behave the same for every service."""
    looped = Rounds()
    assert not looped.wait(0)
    looped.start()
    assert looped.started.wait(5) and looped.wait(5)
    assert looped.rounds == 5 and [str(e) for e in looped.errors] == ["third round"]
    assert looped.closed == 1
    looped.stop()
    looped.stop()

    never = Rounds()
    never.stop()
    never.stop()
    assert never.wait(0) and never.closed == 1 and not never.started.is_set()
    never.start()  # stopped before it started: it never runs
    assert never.rounds == 0

    once = Rounds()
    assert once.run_once() == 0.0 and once.rounds == 1  # a round, no thread


class Sleeper(Service):
    def __init__(self) -> None:
        super().__init__("test-sleeper")
        self.rounds = 0

    def run_once(self) -> float:
        self.rounds += 1
        return 60.0


def test_wake_starts_the_next_round_and_stop_ends_a_long_wait() -> None:
    sleeper = Sleeper()
    sleeper.start()
    deadline = time.monotonic() + 5
    while sleeper.rounds < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    sleeper.wake()
    while sleeper.rounds < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sleeper.rounds == 2
    started = time.monotonic()
    sleeper.stop(5)
    assert sleeper.wait(0) and time.monotonic() - started < 2


@pytest.fixture
def pool(dsn: str) -> Any:
    made = _one_connection(dsn, "pgqueue-test", lambda conn: None)
    made.open()
    yield made
    made.close()


def test_claimer_executor_completer_rounds_without_threads(
    dsn: str, backend: TaskBackend, pool: ConnectionPool[Any]
) -> None:
    """One claim round starts the task on the executor; the outcome comes through the
    executor's callback; one completer round writes it and reports it."""
    task_id = backend.queue_task("add", a=2, b=3)
    registry = JobRegistry.load([TEST_JOBS])
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    freed = threading.Event()
    executor = Executor(
        registry,
        backend,
        "test-worker",
        2,
        hard_time_limits=False,
        poll_timeout=1.0,
        on_outcome=outcomes.put,
        on_slot_free=freed.set,
        on_overrun=lambda: None,
    )
    claimed: list[Any] = []
    claimer = Claimer(
        pool,
        Store("pgqueue"),
        "test-worker",
        ["tasks"],
        list(registry),
        executor,
        backlog=2,
        max_tasks=1,
        burst=False,
        poll_timeout=1.0,
        on_claimed=claimed.extend,
    )
    reported: list[tuple[list[Outcome], Any]] = []
    completer = Completer(
        pool, Store("pgqueue"), "test-worker", lambda b, w: reported.append((b, w))
    )
    executor.start()
    try:
        assert claimer.run_once() is None  # max_tasks=1 reached: the claimer is done
        assert [t.id for t in claimed] == [task_id] and executor.in_flight == 1
        assert freed.wait(10)
        outcome = outcomes.get(timeout=10)
        assert outcome.status == states.SUCCESS and outcome.result == "5"
        completer.put(outcome)
        assert completer.run_once() == 0.0
        [(batch, written)] = reported
        assert batch == [outcome] and task_id in written
        executor.forget(batch)
        assert executor.in_flight == 0
    finally:
        executor.stop()
    assert sql(dsn, "SELECT status FROM pgqueue.task")[0]["status"] == states.SUCCESS


def test_executor_watchdog_round_reports_an_overrunning_thread_job(backend: TaskBackend) -> None:
    """With hard time limits, a round of the executor's watchdog reports a thread job running
    past time_limit + grace; it writes no outcome while the thread can still run (F22), keeps
    the task out of the give-back, and drops what the thread ends with; nothing reaches into a
    Worker."""
    registry = JobRegistry.load([TEST_JOBS])
    outcomes: list[Outcome] = []
    overruns: list[bool] = []
    executor = Executor(
        registry,
        backend,
        "test-worker",
        1,
        hard_time_limits=True,
        poll_timeout=5.0,
        on_outcome=outcomes.append,
        on_slot_free=lambda: None,
        on_overrun=lambda: overruns.append(True),
    )
    task_id = backend.queue_task("sleep", seconds=2.0)
    task = backend.get_task(task_id)
    assert task is not None
    executor.start()
    try:
        executor.submit(task, False)
        assert executor.run_once() > 0 and not overruns  # not overrunning yet
        [(consumer, _)] = executor._running.values()
        consumer.deadline = time.monotonic() - 2  # as if a time limit passed 2 s ago
        executor.run_once()
        assert overruns == [True]
        assert outcomes == [] and executor.overran == 1
        executor.revoke(task_id)  # and the job is told to stop
        assert consumer.revoked
        assert executor.take_unfinished() == []  # left STARTED for the rescue
        wait_until(lambda: executor.jobs_still_running == 0, 10, "the job to return")
        assert outcomes == []
    finally:
        executor.stop()
        assert executor.wait(5)


def test_maintenance_round_rescues_and_reports(dsn: str, pool: ConnectionPool[Any]) -> None:
    """A maintenance round rescues the task of a worker whose lease passed and tells its
    owner (the claimer wakes), on the connection it was given."""
    sql(
        dsn,
        "INSERT INTO pgqueue.worker (id, hostname, pid, queues, backlog, lease_seconds, "
        "heartbeat_at) VALUES ('gone', 'h', 1, '{tasks}', 1, 1, now() - interval '1 hour')",
    )
    sql(
        dsn,
        "INSERT INTO pgqueue.task (name, queue, status, kwargs, worker, attempts, max_retries, "
        "time_started) VALUES ('add', 'tasks', 5, '{}', 'gone', 1, 3, now())",
    )
    rescued: list[bool] = []
    maintenance = Maintenance(
        pool,
        Store("pgqueue"),
        ["tasks"],
        worker_id="me",
        rescue_every=60.0,
        sweep_every=60.0,
        rescue_backoff=ExponentialBackoff(base=0, jitter=0),
        on_rescued=lambda: rescued.append(True),
    )
    assert 50 < maintenance.run_once() <= 60
    assert rescued == [True]
    assert sql(dsn, "SELECT status FROM pgqueue.task")[0]["status"] == states.RETRY


def test_heartbeat_round_reports_a_row_stopped_elsewhere(dsn: str) -> None:
    """A heartbeat round beats; once someone else marked the row stopped it reports it
    (``on_stopped``) instead of registering again."""
    stopped: list[bool] = []
    heartbeat = Heartbeat(
        dsn,
        Store("pgqueue"),
        "beating",
        4.0,
        ["tasks"],
        1,
        on_revoked=lambda task_id: None,
        on_stopped=lambda: stopped.append(True),
    )
    with connect(dsn) as conn:
        heartbeat.register(conn)
    try:
        assert 0 < heartbeat.run_once() <= 1.0 and not stopped
        sql(dsn, "UPDATE pgqueue.worker SET stopped_at = now()")
        heartbeat.run_once()
        assert stopped == [True]
    finally:
        heartbeat.stop()
    heartbeat.sign_off()


def _started_task_of(dsn: str, worker: str, heartbeat_age: str) -> str:
    """A worker row beaten ``heartbeat_age`` ago (1 s lease) running one task; its id."""
    sql(
        dsn,
        "INSERT INTO pgqueue.worker (id, hostname, pid, queues, backlog, lease_seconds, "
        "heartbeat_at) VALUES (%s, 'h', 1, '{tasks}', 1, 1, now() - %s::interval)",
        (worker, heartbeat_age),
    )
    rows = sql(
        dsn,
        "INSERT INTO pgqueue.task (name, queue, status, kwargs, worker, attempts, max_retries, "
        "time_started) VALUES ('add', 'tasks', 5, '{}', %s, 1, 3, now()) RETURNING id::text",
        (worker,),
    )
    return str(rows[0]["id"])


def test_rescue_never_takes_the_sweepers_own_tasks_nor_a_locked_workers(dsn: str) -> None:
    """F23: a late heartbeat is never a reason on its own. A sweep skips the sweeping worker's
    own tasks, and the tasks of a lost-looking worker whose row another session holds
    locked; once the lock is gone (and for any other sweeper) the lost worker's task is
    rescued."""
    store = Store("pgqueue")
    mine = _started_task_of(dsn, "me", "1 hour")
    locked = _started_task_of(dsn, "held", "1 hour")
    backoff = ExponentialBackoff(base=0, jitter=0)
    with connect(dsn) as conn, connect(dsn, autocommit=False) as operator:
        operator.execute("SELECT 1 FROM pgqueue.worker WHERE id = 'held' FOR UPDATE")
        assert rescue_lost_tasks(conn, store, backoff, worker="me") == []
        operator.rollback()
        assert [r["id"] for r in rescue_lost_tasks(conn, store, backoff, worker="me")] == [locked]
        assert [r["id"] for r in rescue_lost_tasks(conn, store, backoff)] == [mine]


def test_heartbeat_round_reports_executions_it_no_longer_owns(dsn: str) -> None:
    """F21: a beat sends the executions the worker still runs and reports those no longer
    STARTED under it on that attempt (rescued while it was frozen)."""
    rescued = _started_task_of(dsn, "other", "1 second")
    sql(dsn, "DELETE FROM pgqueue.worker")
    kept = _started_task_of(dsn, "other", "1 second")
    sql(dsn, "DELETE FROM pgqueue.worker")
    lost: list[list[str]] = []
    heartbeat = Heartbeat(
        dsn,
        Store("pgqueue"),
        "beating",
        4.0,
        ["tasks"],
        1,
        on_revoked=lambda task_id: None,
        on_stopped=lambda: None,
        held=lambda: [(rescued, 1), (kept, 1)],
        on_lost=lost.append,
    )
    with connect(dsn) as conn:
        heartbeat.register(conn)
    sql(dsn, "UPDATE pgqueue.task SET worker = 'beating'")
    sql(dsn, "UPDATE pgqueue.task SET status = 4 WHERE id = %s", (rescued,))
    try:
        heartbeat.run_once()
        assert lost == [[(rescued, 1)]]
    finally:
        heartbeat.stop()


def test_heartbeat_round_blocked_by_a_row_lock_warns_and_retries_at_once(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """F23: a beat waits at most its lock_timeout for the worker's row, warns, and asks to be
    tried again at once; the lock_timeout is SET LOCAL (no session state is left behind)."""
    heartbeat = Heartbeat(
        dsn,
        Store("pgqueue"),
        "blocked",
        2.0,
        ["tasks"],
        1,
        on_revoked=lambda task_id: None,
        on_stopped=lambda: None,
    )
    with connect(dsn) as conn:
        heartbeat.register(conn)
    try:
        with connect(dsn, autocommit=False) as operator:
            operator.execute("SELECT 1 FROM pgqueue.worker WHERE id = 'blocked' FOR UPDATE")
            started = time.monotonic()
            assert heartbeat.run_once() == 0.0
            assert time.monotonic() - started < heartbeat.lock_timeout + 1.0
            assert "heartbeat of worker blocked blocked" in caplog.text
        assert 0 < heartbeat.run_once() <= 0.5  # through again, at its usual rate
        assert heartbeat._conn is not None
        setting = heartbeat._conn.execute("SHOW lock_timeout").fetchone()
        assert setting is not None and setting["lock_timeout"] == "0"
    finally:
        heartbeat.stop()


def test_outcome_of_a_job_that_returned_is_success_even_after_a_revoke(
    backend: TaskBackend,
) -> None:
    """F26: a job that returned normally ends SUCCESS with its result although a revoke
    request arrived; item 9: one that returned past its time limit ends like one that raised
    TimeLimitExceeded."""
    registry = JobRegistry.load([TEST_JOBS])
    task_id = backend.queue_task("add", a=1, b=2)
    task = backend.get_task(task_id)
    assert task is not None
    consumer = TaskConsumer(backend, "w", task, registry["add"])
    returned: concurrent.futures.Future[Any] = concurrent.futures.Future()
    returned.set_result(3)
    consumer.revoked = True
    assert outcome_of(consumer, returned) == Outcome(task, states.SUCCESS, "3")
    stopped: concurrent.futures.Future[Any] = concurrent.futures.Future()
    stopped.set_exception(Revoked("stop"))
    assert outcome_of(consumer, stopped).status == states.REVOKED
    consumer.revoked = False
    consumer.deadline = time.monotonic() - 1  # returned after its time limit
    late = outcome_of(consumer, returned)
    assert late.status in (states.RETRY, states.FAILURE)
    assert (late.error or "").startswith("TimeLimitExceeded")


def test_worker_services_import_no_metrics_and_the_scheduler_no_backend() -> None:
    """The metrics subscribe to the worker's events, the worker does not know them; the
    scheduler queues ticks without building a TaskBackend."""
    worker = ROOT / "pgqueue" / "worker"
    for path in worker.glob("*.py") if worker.is_dir() else [worker.with_suffix(".py")]:
        for node in ast.walk(ast.parse(path.read_text())):  # TYPE_CHECKING imports too
            if isinstance(node, ast.ImportFrom):
                assert "metrics" not in (node.module or ""), f"{path.name} imports metrics"
    tree = ast.parse((ROOT / "pgqueue" / "_scheduler.py").read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert "TaskBackend" not in names


def test_orphan_rescue_never_sees_a_claimed_task_before_the_executor_holds_it(
    dsn: str, backend: TaskBackend, pool: ConnectionPool[Any]
) -> None:
    """Maintenance shares the claimer's one connection, and the claimer keeps it until its
    tasks are submitted: a rescue round that comes between a claim's commit and the executor
    holding the task (a process frozen right there, then thawed) waits, and then finds the
    task held, not an orphan."""
    task_id = backend.queue_task("add", a=1, b=2)
    submitting, release = threading.Event(), threading.Event()
    held: list[str] = []

    class SlowSlots:
        """The executor's side the claimer uses, its submit paused at the worst moment."""

        jobs_still_running = 0
        in_flight = 0

        def submit(self, task: Any, provider_set: bool) -> None:
            submitting.set()
            assert release.wait(10)
            held.append(task.id)

    claimer = Claimer(
        pool,
        Store("pgqueue"),
        "me",
        ["tasks"],
        ["add"],
        SlowSlots(),
        backlog=1,
        max_tasks=0,
        burst=False,
        poll_timeout=1.0,
        on_claimed=lambda tasks: None,
    )
    maintenance = Maintenance(
        pool,
        Store("pgqueue"),
        ["tasks"],
        worker_id="me",
        rescue_every=60.0,
        sweep_every=60.0,
        rescue_backoff=ExponentialBackoff(base=0, jitter=0),
        on_rescued=lambda: None,
        claimed=lambda: list(held),
        orphan_after=0.0,  # any STARTED task of "me" not held is an orphan
    )
    claiming = threading.Thread(target=claimer.claim, args=(1,))
    claiming.start()
    assert submitting.wait(10)
    rescuing = threading.Thread(target=maintenance.rescue)
    rescuing.start()
    rescuing.join(0.5)
    assert rescuing.is_alive()  # waits for the claimer's connection
    release.set()
    claiming.join(10)
    rescuing.join(10)
    assert not claiming.is_alive() and not rescuing.is_alive()
    assert held == [task_id]
    assert sql(dsn, "SELECT status, worker FROM pgqueue.task") == [
        {"status": states.STARTED, "worker": "me"}
    ]

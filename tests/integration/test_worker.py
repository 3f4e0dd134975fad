"""The worker: transitions, expiry, events, concurrency, wait_for_task (the core issue)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
import pytest

import pgqueue
from pgqueue import states
from pgqueue._db import connect
from pgqueue._errors import TaskNotFound, TaskTimeout
from pgqueue._store import Store
from tests.support.fixtures import sql


def test_success_failure_and_async(backend: pgqueue.TaskBackend, start_worker: Any) -> None:
    ok = backend.queue_task("add", a=2, b=3)
    fails = backend.queue_task("fail", x=1)
    coro = backend.queue_task("async_add", a=1, b=1)
    bad_result = backend.queue_task("not_json")
    start_worker(burst=True).join()
    done = {t.id: t for t in backend.get_tasks([ok, fails, coro, bad_result])}  # type: ignore[list-item]
    assert done[ok].status == states.SUCCESS and done[ok].result == 5  # type: ignore[index]
    assert done[coro].status == states.SUCCESS and done[coro].result == 2  # type: ignore[index]
    failed = done[fails]  # type: ignore[index]
    assert failed.status == states.FAILURE and failed.result is None
    assert failed.error == "ValueError: failed with {'x': 1}"
    assert "Traceback" in (failed.traceback or "") and "raise ValueError" in (
        failed.traceback or ""
    )
    assert done[bad_result].status == states.FAILURE  # type: ignore[index]
    assert "JSON" in (done[bad_result].error or "")  # type: ignore[index]
    for task in done.values():
        assert task.time_started and task.time_ended and task.worker
        assert task.time_queued <= task.time_started <= task.time_ended  # type: ignore[operator]
        assert task.attempts == 1


def test_events_on_every_transition(
    backend: pgqueue.TaskBackend, dsn: str, start_worker: Any
) -> None:
    with connect(dsn) as listen:
        for event in ("task_queued", "task_started", "task_done"):
            listen.execute(f'LISTEN "tasks_{event}"')
        task_id = backend.queue_task("add", a=1, b=1)
        start_worker(burst=True).join()
        seen = [(n.channel, n.payload) for n in listen.notifies(timeout=1.0)]
    assert seen == [
        ("tasks_task_queued", task_id),
        ("tasks_task_started", task_id),
        ("tasks_task_done", task_id),
    ]


def test_expired_task_is_revoked_at_claim(
    backend: pgqueue.TaskBackend, dsn: str, start_worker: Any
) -> None:
    task_id = backend.queue_task("record", expiry=0.0, key="never")
    sql(dsn, "CREATE TABLE test_executions (task_id uuid, key text, worker text)")
    start_worker(burst=True).join()
    task = backend.get_task(task_id or "")
    assert task and task.status == states.REVOKED and task.attempts == 0
    assert task.time_started is None and task.error == "expired before it started"
    assert sql(dsn, "SELECT count(*) AS n FROM test_executions")[0]["n"] == 0


@pytest.mark.slow
def test_sweep_revokes_expired_tasks_while_all_slots_are_busy(
    backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    busy = backend.queue_task("sleep", seconds=3)
    handle = start_worker(backlog=1, poll_timeout=0.2)
    time.sleep(0.5)
    expiring = backend.queue_task("add", expiry=0.3, a=1, b=1)
    task = backend.wait_for_task(expiring or "", timeout=2.0)  # well before `busy` ends
    assert task.status == states.REVOKED and task.attempts == 0
    assert backend.get_task(busy or "").status == states.STARTED  # type: ignore[union-attr]
    handle.stop()


def test_sweep_racing_claims_never_overwrites_a_started_task(dsn: str, start_worker: Any) -> None:
    """Tasks expire while three workers claim and a fourth connection sweeps in a loop."""
    sql(dsn, "CREATE TABLE test_executions (task_id uuid, key text, worker text)")
    sql(
        dsn,
        "INSERT INTO pgqueue.task (name, kwargs, expiry) "
        "SELECT 'record', jsonb_build_object('key', i::text), "
        "       now() + (random() * 1.5) * interval '1 second' "
        "FROM generate_series(1, 600) i",
    )
    stop = threading.Event()
    revoked_by_sweep = 0

    def sweep() -> None:
        nonlocal revoked_by_sweep
        op = Store("pgqueue").revoke_expired(queues=["tasks"], limit=50)
        with connect(dsn) as conn:
            while not stop.is_set():
                rows = op.run(conn)
                revoked_by_sweep += len(rows)

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    workers = [start_worker(backlog=4, poll_timeout=0.05, burst=True) for _ in range(3)]
    for handle in workers:
        handle.join(60)
    stop.set()
    sweeper.join()
    rows = sql(
        dsn,
        "SELECT t.status, t.attempts, count(e.task_id) AS runs FROM pgqueue.task t "
        "LEFT JOIN test_executions e ON e.task_id = t.id GROUP BY t.id",
    )
    assert len(rows) == 600
    for row in rows:
        if row["status"] == states.REVOKED:
            assert (row["attempts"], row["runs"]) == (0, 0)
        else:
            assert (row["status"], row["attempts"], row["runs"]) == (states.SUCCESS, 1, 1)
    assert revoked_by_sweep > 0 or any(r["status"] == states.REVOKED for r in rows)


@pytest.mark.slow
def test_workers_drain_thousands_exactly_once(
    backend: pgqueue.TaskBackend, dsn: str, start_worker: Any
) -> None:
    sql(dsn, "CREATE TABLE test_executions (task_id uuid, key text, worker text)")
    sql(
        dsn,
        "INSERT INTO pgqueue.task (name, kwargs) "
        "SELECT 'record', jsonb_build_object('key', i::text) FROM generate_series(1, 3000) i",
    )
    workers = [start_worker(backlog=8, burst=True, poll_timeout=0.1) for _ in range(3)]
    for handle in workers:
        handle.join(120)
    counts = sql(
        dsn,
        "SELECT count(*) AS runs, count(DISTINCT task_id) AS tasks, "
        "count(DISTINCT worker) AS workers FROM test_executions",
    )[0]
    assert counts["runs"] == counts["tasks"] == 3000
    assert counts["workers"] == 3
    states_left = sql(dsn, "SELECT status, count(*) AS n FROM pgqueue.task GROUP BY status")
    assert states_left == [{"status": states.SUCCESS, "n": 3000}]


def test_notify_wakes_an_idle_worker_long_before_poll_timeout(
    backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    handle = start_worker(poll_timeout=30.0)
    backend.wait_for_task(backend.queue_task("add", a=0, b=0) or "", timeout=10)  # warm up
    latencies = []
    for i in range(5):
        started = time.monotonic()
        task = backend.wait_for_task(backend.queue_task("add", a=i, b=1) or "", timeout=5)
        latencies.append(time.monotonic() - started)
        assert task.status == states.SUCCESS
    handle.stop()
    print(f"enqueue -> done latencies (s): {[round(x, 4) for x in latencies]}")
    assert max(latencies) < 5  # poll_timeout is 30 s: only NOTIFY can explain this


def test_wait_for_task_finished_running_and_never(
    backend: pgqueue.TaskBackend, start_worker: Any
) -> None:
    finished = backend.queue_task("add", a=1, b=1)
    start_worker(burst=True).join()
    assert backend.wait_for_task(finished or "", timeout=0.1).result == 2

    with pytest.raises(TaskTimeout, match="still QUEUED"):
        backend.wait_for_task(backend.queue_task("add", a=5, b=5) or "", timeout=0.5)
    with pytest.raises(TaskNotFound):
        backend.wait_for_task("00000000-0000-0000-0000-000000000000", timeout=1)

    running = backend.queue_task("sleep", seconds=1.0)
    handle = start_worker(poll_timeout=30.0)
    started = time.monotonic()
    task = backend.wait_for_task(running or "", timeout=20)
    assert task.status == states.SUCCESS and 0.9 < time.monotonic() - started < 15
    handle.stop()


@pytest.mark.slow
def test_wait_for_task_survives_a_missed_notification(
    backend: pgqueue.TaskBackend, dsn: str
) -> None:
    """The task ends by a write whose NOTIFY the waiter cannot see (trigger disabled)."""
    task_id = backend.queue_task("add", a=1, b=1)
    result: list[pgqueue.Task] = []
    waiter = threading.Thread(
        target=lambda: result.append(backend.wait_for_task(task_id or "", 20))
    )
    waiter.start()
    time.sleep(0.5)
    with connect(dsn) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # no triggers, no NOTIFY
        conn.execute(
            "UPDATE pgqueue.task SET status = 1, time_ended = now() WHERE id = %s", (task_id,)
        )
    waiter.join(15)
    assert result and result[0].status == states.SUCCESS


def test_max_tasks_exits_after_n(backend: pgqueue.TaskBackend, dsn: str, start_worker: Any) -> None:
    for i in range(10):
        backend.queue_task("add", a=i, b=i)
    handle = start_worker(max_tasks=3, backlog=2, poll_timeout=30.0)
    handle.join(30)
    assert handle.exit_code == 0 and handle.worker.processed == 3
    counts = {
        r["status"]: r["n"]
        for r in sql(dsn, "SELECT status, count(*) AS n FROM pgqueue.task GROUP BY 1")
    }
    assert counts == {states.SUCCESS: 3, states.QUEUED: 7}


def test_worker_claims_only_jobs_it_knows(backend: pgqueue.TaskBackend, start_worker: Any) -> None:
    known = backend.queue_task("add", a=1, b=1)
    unknown = backend.queue_task("sleep", seconds=0)
    registry = pgqueue.JobRegistry([pgqueue.JobRegistry.load(["tests.support.jobs"])["add"]])
    start_worker(registry=registry, burst=True).join()
    assert backend.get_task(known or "").status == states.SUCCESS  # type: ignore[union-attr]
    assert backend.get_task(unknown or "").status == states.QUEUED  # type: ignore[union-attr]


def test_a_job_queues_another_task(backend: pgqueue.TaskBackend, start_worker: Any) -> None:
    parent = backend.queue_task("queue_child", a=41)
    start_worker(burst=True, poll_timeout=0.1).join()
    child_id = backend.get_task(parent or "").result  # type: ignore[union-attr]
    assert backend.wait_for_task(child_id, timeout=10).result == 42


def test_worker_registers_and_stops(dsn: str, start_worker: Any) -> None:
    handle = start_worker(poll_timeout=30.0)
    deadline = time.monotonic() + 10
    while not sql(dsn, "SELECT id FROM pgqueue.worker") and time.monotonic() < deadline:
        time.sleep(0.05)
    [row] = sql(dsn, "SELECT id, hostname, pid, stopped_at FROM pgqueue.worker")
    assert row["id"] == handle.worker.id and row["stopped_at"] is None
    handle.stop()
    assert sql(dsn, "SELECT stopped_at FROM pgqueue.worker")[0]["stopped_at"] is not None


def test_info_summarises_ended_tasks_every_interval_and_at_stop(
    backend: pgqueue.TaskBackend, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """INFO has one line per interval for the tasks that ended in it (while the worker runs,
    not only at its stop; the stop's remainder: test_pgqueue_worker_command_runs_real_jobs),
    and no line per start or success."""
    caplog.set_level(logging.INFO, logger="pgqueue.worker")
    handle = start_worker(log_summary_every=0.5)

    def summaries() -> list[str]:
        return [r.getMessage() for r in caplog.records if " ended (SUCCESS" in r.getMessage()]

    ids = [backend.queue_task("add", a=i, b=1) for i in range(3)] + [backend.queue_task("fail")]
    for task_id in ids:
        assert task_id and backend.wait_for_task(task_id, timeout=10).status in states.READY_STATES
    deadline = time.monotonic() + 5
    while not summaries() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(summaries()) == 1, summaries()
    assert "4 runs ended (SUCCESS 3, FAILURE 1)" in summaries()[0]
    last = backend.queue_task("add", a=1, b=2)
    assert last and backend.wait_for_task(last, timeout=10).status == states.SUCCESS
    handle.stop()
    assert len(summaries()) == 2 and "1 run ended (SUCCESS 1)" in summaries()[1]
    record = next(r for r in caplog.records if "4 runs ended" in r.getMessage())
    assert (record.levelname, record.ended, record.SUCCESS, record.FAILURE) == ("INFO", 4, 3, 1)
    assert not [r for r in caplog.records if " STARTED at " in r.getMessage()]
    assert not [r for r in caplog.records if " SUCCESS at " in r.getMessage()]
    assert [r.levelname for r in caplog.records if " FAILURE at " in r.getMessage()] == ["ERROR"]


def test_a_live_worker_rescues_its_own_orphans_one_lease_after_they_started(
    backend: pgqueue.TaskBackend, dsn: str, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """After a failover to a standby that missed the worker's outcome write, the promoted
    database shows a task STARTED under a live worker that let it go: its heartbeat keeps the
    lease, so no other worker rescues it. The worker itself does, once the task started more
    than a lease ago, and runs it again; a task it really runs longer than the lease is its
    own and left alone."""
    caplog.set_level(logging.WARNING, logger="pgqueue.rescuer")
    handle = start_worker(lease=2.0)
    long = backend.queue_task("sleep", seconds=4.0)
    orphan = backend.queue_task("add", a=1, b=2, countdown=3600)
    assert long and orphan
    deadline = time.monotonic() + 10
    while not sql(dsn, "SELECT 1 FROM pgqueue.task WHERE id = %s AND status = 5", (long,)):
        assert time.monotonic() < deadline, "the long task did not start"
        time.sleep(0.05)
    # The row as the promoted standby has it: claimed by this worker, the outcome lost.
    sql(
        dsn,
        "UPDATE pgqueue.task SET status = 5, worker = %s, attempts = 1, max_retries = 1, "
        "time_started = now() - interval '1 minute' WHERE id = %s",
        (handle.worker.id, orphan),
    )
    rerun = backend.wait_for_task(orphan, timeout=20)
    assert (rerun.status, rerun.result, rerun.attempts) == (states.SUCCESS, 3, 2)
    held = backend.wait_for_task(long, timeout=20)
    assert (held.status, held.attempts) == (states.SUCCESS, 1)  # never taken from its worker
    rescued = [r.getMessage() for r in caplog.records if "rescued task." in r.getMessage()]
    assert len(rescued) == 1 and orphan in rescued[0] and "now RETRY" in rescued[0], rescued
    history = sql(
        dsn, "SELECT error FROM pgqueue.task_attempt WHERE task_id = %s ORDER BY attempt", (orphan,)
    )
    assert history and "holds no run of it" in (history[0]["error"] or ""), history


@pytest.mark.slow
def test_a_second_run_of_a_task_by_the_same_worker_is_left_alone_by_the_first(
    backend: pgqueue.TaskBackend, dsn: str, start_worker: Any
) -> None:
    """A worker frozen past its lease may, once thawed, claim again the task it was running
    (rescued meanwhile) before its heartbeat tells the first run it is lost. The executor
    keeps its ledger by run (task id, attempt): the first run's fenced-off end must not drop
    the second from it, or the worker's own orphan rescue would take the second run from it,
    and every attempt after it, until the task failed."""
    handle = start_worker(lease=2.0, poll_timeout=0.2)
    task_id = backend.queue_task("sleep", seconds=5.0)
    assert task_id
    deadline = time.monotonic() + 10
    while not sql(dsn, "SELECT 1 FROM pgqueue.task WHERE id = %s AND status = 5", (task_id,)):
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.05)
    with psycopg.connect(dsn, autocommit=False) as blocker:
        # The worker's row held: its heartbeat comes second, as it may after a freeze.
        blocker.execute(
            "SELECT 1 FROM pgqueue.worker WHERE id = %s FOR UPDATE", (handle.worker.id,)
        )
        # What another worker's rescue did while this one was frozen.
        sql(
            dsn,
            "UPDATE pgqueue.task SET status = 4, run_at = now(), max_retries = 3, "
            "error = 'worker lost (as another worker rescues it)' WHERE id = %s",
            (task_id,),
        )
        query = "SELECT 1 FROM pgqueue.task WHERE id = %s AND status = 5 AND attempts = 2"
        while not sql(dsn, query, (task_id,)):
            assert time.monotonic() < deadline + 10, "the task was not claimed again"
            time.sleep(0.05)
        blocker.rollback()
    done = backend.wait_for_task(task_id, timeout=40)
    assert (done.status, done.attempts) == (states.SUCCESS, 2)
    history = sql(dsn, "SELECT error FROM pgqueue.task_attempt WHERE task_id = %s", (task_id,))
    assert not [h for h in history if "holds no run of it" in (h["error"] or "")], history

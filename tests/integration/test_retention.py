"""Bloat and retention (F10): history does not slow claiming; old finished tasks get pruned."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from pgqueue import TaskBackend
from pgqueue._db import connect
from pgqueue._pruner import Pruner
from tests.support.fixtures import bin_path, cli_env, sql
from tests.support.plans import explain_as_claimer, plan_nodes

HISTORY = """
INSERT INTO pgqueue.task (name, status, kwargs, time_ended, worker, attempts)
SELECT 'add', %(status)s, jsonb_build_object('a', g, 'b', 0),
       now() - %(age)s::float8 * interval '1 second', 'history', 1
FROM generate_series(1, %(count)s) AS g
"""
LIVE = """
INSERT INTO pgqueue.task (name, status, kwargs, run_at, worker)
VALUES ('add', %(status)s, '{"a": 1, "b": 2}', now() + interval '1 hour', 'elsewhere')
"""
DAY = 86400.0


def _history(dsn: str, status: int, count: int, age: float) -> None:
    sql(dsn, HISTORY, {"status": status, "count": count, "age": age})


def _claim_sqls(backend: TaskBackend) -> list[str]:
    """The texts of the worker's claim statements for the backend's schema: with flow control,
    and without (the claim of tasks none of which is limited), of a worker of several jobs and
    of one job."""
    store = backend.store
    return [
        claim(queues=[], jobs=jobs, limit=0, worker="").sql
        for claim in (store.claim_tasks, store.claim_unlimited_tasks)
        for jobs in (["add", "sleep"], ["add"])
    ]


#: The indexes a claim may read: the claimable tasks, the picked ones by primary key, and the
#: settings of its queues (a primary-key probe per queue).
CLAIM_INDEXES = {"task_claimable_job", "task_pkey", "queue_setting_pkey"}


def _claimer_plan(conn: Any, claim: str, limit: int) -> list[dict[str, Any]]:
    """The nodes of the plan the worker's claimer runs: the claim statement prepared on a
    connection set up by ``claim_session`` (one generic plan), executed once, explained."""
    params = {"queues": ["tasks"], "jobs": ["add"], "limit": limit, "worker": "x", "fair": False}
    return list(plan_nodes(explain_as_claimer(conn, claim, params)["Plan"]))


@pytest.mark.slow
def test_f10_claim_reads_the_claimable_index_despite_history_dead_tuples_and_an_open_transaction(
    dsn: str, backend: TaskBackend
) -> None:
    """F10: 200,000 finished rows, 20,000 of them updated again (dead tuples), and a
    transaction left open in another session that holds vacuum back. A claim still reads the
    partial index task_claimable_job and touches about as many rows as it claims, then the
    picked rows by primary key, also in the one generic plan the worker's claimer keeps."""
    _history(dsn, 1, 200_000, 2 * DAY)
    sql(dsn, "UPDATE pgqueue.task SET result = '1' WHERE mod((kwargs->>'a')::int, 10) = 0")
    backend.queue_tasks("add", [{"a": n, "b": 1} for n in range(50)])
    sql(dsn, "ANALYZE pgqueue.task")
    with connect(dsn, autocommit=False) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pgqueue.worker")
        for claim in _claim_sqls(backend):
            with connect(dsn, autocommit=False) as conn:
                nodes = _claimer_plan(conn, claim, 10)
                conn.rollback()
            assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes
            assert {n["Index Name"] for n in nodes if "Index Name" in n} == CLAIM_INDEXES, nodes
            claimable = [n for n in nodes if n.get("Index Name") == "task_claimable_job"]
            assert sum(n["Actual Rows"] * n["Actual Loops"] for n in claimable) <= 20, nodes
        holder.rollback()


@pytest.mark.slow
def test_claimer_generic_plan_reads_picked_rows_by_primary_key(
    dsn: str, backend: TaskBackend
) -> None:
    """The claimer keeps one generic plan (``claim_session``), planned without knowing
    ``limit``: with a backlog of 20,000 tasks it must still update the picked rows through the
    primary key, not join them to a scan of the whole table."""
    for _ in range(20):
        backend.queue_tasks("add", [{"a": n, "b": 1} for n in range(1000)])
    sql(dsn, "ANALYZE pgqueue.task")
    for claim in _claim_sqls(backend):
        with connect(dsn, autocommit=False) as conn:
            nodes = _claimer_plan(conn, claim, 20)
            conn.rollback()
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes
        assert {n["Index Name"] for n in nodes if "Index Name" in n} == CLAIM_INDEXES, nodes


def test_f10_pruner_deletes_only_old_finished_tasks_in_batches(dsn: str) -> None:
    """F10 retention: tasks that finished more than ``older_than`` ago go, in batches of
    ``batch`` rows; recent finished tasks and every live task (QUEUED, STARTED, RETRY) stay."""
    for status in (1, 2, 3):
        _history(dsn, status, 9, 10 * DAY)  # old: pruned
        _history(dsn, status, 4, 1 * DAY)  # recent: kept
    for status in (4, 5, 6):
        sql(dsn, LIVE, {"status": status})
    pruner = Pruner(dsn, "pgqueue", older_than=7 * DAY, batch=5)
    assert pruner.prune() == 27
    left = sql(dsn, "SELECT status, count(*) AS n FROM pgqueue.task GROUP BY status ORDER BY 1")
    assert [(r["status"], r["n"]) for r in left] == [(1, 4), (2, 4), (3, 4), (4, 1), (5, 1), (6, 1)]
    assert pruner.prune() == 0


def test_f10_pruner_keeps_the_states_it_was_not_given(dsn: str) -> None:
    """``task_states`` narrows what is pruned; live states are never pruned even if given."""
    for status in (1, 2, 3):
        _history(dsn, status, 3, 10 * DAY)
    pruner = Pruner(dsn, "pgqueue", older_than=DAY, task_states=[2, 5, 6])
    assert pruner.prune() == 3
    left = sql(dsn, "SELECT DISTINCT status FROM pgqueue.task ORDER BY 1")
    assert [r["status"] for r in left] == [1, 3]


def test_f10_worker_with_prune_after_prunes_in_the_background(dsn: str, start_worker: Any) -> None:
    """``Worker(prune_after=...)`` runs the pruner on its own thread: old finished tasks
    disappear without any command, while the worker keeps running tasks."""
    _history(dsn, 1, 50, 3 * DAY)
    _history(dsn, 1, 5, 60.0)
    handle = start_worker(prune_after=DAY)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 5:
            break
        time.sleep(0.1)
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] == 5
    handle.stop()


@pytest.mark.slow
def test_f10_pgqueue_worker_prune_after_flag(dsn: str) -> None:
    """``pgqueue-worker --prune-after 1d``: the operator's switch for the same pruner; a bad
    duration is refused with a message, not a traceback."""
    _history(dsn, 1, 30, 3 * DAY)
    _history(dsn, 1, 4, 60.0)
    args = [
        bin_path("pgqueue-worker"),
        "--task-paths",
        "tests.support.jobs",
        "--log-level",
        "WARNING",
    ]
    env = cli_env(dsn)
    bad = subprocess.run(
        [*args, "--prune-after", "soon"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0 and "--prune-after" in bad.stderr and "Traceback" not in bad.stderr
    proc = subprocess.Popen(
        [*args, "--prune-after", "1d"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"] != 4:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "old tasks were not pruned"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)


def test_f10_task_table_is_tuned_for_churn(dsn: str) -> None:
    """Autovacuum on the task table starts after 1% of it changed, not PostgreSQL's 20%."""
    options = sql(dsn, "SELECT reloptions FROM pg_class WHERE oid = 'pgqueue.task'::regclass")
    settings = dict(o.split("=") for o in options[0]["reloptions"])
    assert settings["autovacuum_vacuum_scale_factor"] == "0.01"
    assert settings["fillfactor"] == "85"

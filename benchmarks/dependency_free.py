"""What workflows cost a workload without dependencies (issue 14: at most 3%), side by side.

One fresh database, measured in turns ``with`` the workflow feature as migrated and
``without`` the parts of it that a task without parents or children still runs: the
triggers ``task_dependents_ended`` (a row trigger whose WHEN clause every status change
evaluates), ``task_dependents_batch`` (a statement trigger every claim and finish fires) and
``task_new_dependent`` (a deferred row trigger whose WHEN clause every insert evaluates) are
disabled, and the partial index ``task_waiting`` (whose predicate every insert and status
change evaluates) is dropped; the next ``with`` turn enables and creates them again. What
cannot be dropped without changing the code stays in both: the columns ``waiting_on`` and
``has_dependents`` (5 bytes a row) and ``waiting_on = 0`` in the claim and its index. Each
round measures, in each state in turn (the first alternating), no-op tasks queued one at a
time, in bulk, and drained by one in-process worker, as :mod:`benchmarks.bench_pgqueue`
does. The drains also time the server's work in the functions of the workflow triggers
(``track_functions``), a cost too small for the drain's rate to resolve: two identical
databases measured 0.96 of each other in an earlier form of this scenario, and one drain
differs from the next by up to a fifth.
"""

from __future__ import annotations

import time

from pgqueue import TaskBackend
from pgqueue._db import connect
from pgqueue._schema import migrate

from . import bench_pgqueue
from .common import Figures, Server, Sizes, log

#: The workflow triggers a task without dependencies still fires or evaluates.
TRIGGERS = ("task_dependents_ended", "task_dependents_batch", "task_new_dependent")

#: The partial index of tasks waiting for a parent, as revision pgqueue_0013_queue_stats
#: creates it.
TASK_WAITING = (
    "CREATE INDEX task_waiting ON pgqueue.task (queue, name) "
    "WHERE status IN (4, 6) AND waiting_on > 0"
)


def _switch(dsn: str, workflows: bool) -> None:
    """Enable the workflow triggers and create ``task_waiting`` (``workflows``), or disable
    and drop them."""
    verb = "ENABLE" if workflows else "DISABLE"
    with connect(dsn) as conn:
        for trigger in TRIGGERS:
            conn.execute(f"ALTER TABLE pgqueue.task {verb} TRIGGER {trigger}")
        conn.execute(TASK_WAITING if workflows else "DROP INDEX pgqueue.task_waiting")


#: (figure with workflows, the same without, least ratio wanted)
TARGETS = tuple(
    (f"{figure}, with workflows", f"{figure}, without", 0.97)
    for figure in ("enqueue one", "enqueue bulk", "drain")
)


#: The functions of the workflow triggers a task without dependencies can reach.
FUNCTIONS = ("note_ended_parent", "release_dependents_batch", "settle_new_dependent")

#: Server time spent in those functions so far (``track_functions``), in milliseconds.
FUNCTION_TIME = """
SELECT coalesce(sum(total_time), 0)::float8 AS ms FROM pg_stat_user_functions
WHERE schemaname = 'pgqueue' AND funcname = ANY(%(functions)s)
"""


#: Sessions of the current database other than this one.
OTHER_SESSIONS = """
SELECT count(*) AS n FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


def _trigger_ms(dsn: str) -> float:
    """Milliseconds spent in :data:`FUNCTIONS` so far, once the worker's sessions ended (a
    session reports its function times when it ends)."""
    with connect(dsn) as conn:
        deadline = time.monotonic() + 10
        while conn.execute(OTHER_SESSIONS).fetchone()["n"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the last session's report, sent as it exits
        row = conn.execute(FUNCTION_TIME, {"functions": list(FUNCTIONS)}).fetchone()
    return float(row["ms"]) if row else 0.0


def _round(dsn: str, label: str, sizes: Sizes, tasks: int, result: Figures) -> None:
    with TaskBackend(dsn, registry=bench_pgqueue.registry()) as backend:
        backend.queue_task("noop")  # open the pool
        result.add(f"enqueue one, {label}", bench_pgqueue.enqueue_one(backend, sizes.single))
        with connect(dsn) as conn:
            conn.execute("DELETE FROM pgqueue.task")
        bulk, _ = bench_pgqueue.enqueue_bulk(backend, tasks, sizes.batch)
        result.add(f"enqueue bulk, {label}", bulk)
    before = _trigger_ms(dsn)
    drained = bench_pgqueue.drain(dsn, tasks, sizes.concurrency)
    result.add(f"drain, {label}", drained)
    if label == "with workflows":
        result.add("drain, microseconds per task", 1e6 / drained)
        result.add(
            "drain, trigger microseconds per task", (_trigger_ms(dsn) - before) * 1e3 / tasks
        )
    with connect(dsn) as conn:
        conn.execute("DELETE FROM pgqueue.task")
        conn.execute("VACUUM ANALYZE pgqueue.task")


def run(server: Server, sizes: Sizes, tasks: int) -> Figures:
    """``sizes.repeat`` rounds of every figure with and without the workflow parts, A B,
    then B A, on one fresh database."""
    dsn = server.fresh_database("bench_dependency_free")
    migrate(dsn, "pgqueue")
    with connect(dsn) as conn:  # every session of this database times its PL/pgSQL functions
        conn.execute("ALTER DATABASE bench_dependency_free SET track_functions = 'pl'")
    result = Figures(tasks)
    pair = [(True, "with workflows"), (False, "without")]
    enabled = True  # as migrated
    for attempt in range(sizes.repeat):
        log(f"dependency-free workload: run {attempt + 1}/{sizes.repeat}")
        for workflows, label in pair if attempt % 2 == 0 else pair[::-1]:
            if workflows != enabled:
                _switch(dsn, workflows)
                enabled = workflows
            _round(dsn, label, sizes, tasks, result)
    return result

"""What workflows cost a workload without dependencies (issue 14: at most 3%), side by side.

Two fresh databases of one server: ``with`` as migrated, and ``without``, where the parts of
the workflow feature that a task without parents or children still runs are dropped: the
triggers ``task_dependents_ended`` (a row trigger whose WHEN clause every status change
evaluates), ``task_dependents_batch`` (a statement trigger every claim and finish fires) and
``task_new_dependent`` (a deferred row trigger whose WHEN clause every insert evaluates), and
the partial index ``task_waiting`` (whose predicate every insert and status change
evaluates). What cannot be dropped without changing the code stays in both: the columns
``waiting_on`` and ``has_dependents`` (5 bytes a row) and ``waiting_on = 0`` in the claim and
its index. Each round measures, on each database in turn (the first alternating), no-op tasks
queued one at a time, in bulk, and drained by one in-process worker, as
:mod:`benchmarks.bench_pgqueue` does.
"""

from __future__ import annotations

from pgqueue import TaskBackend
from pgqueue._db import connect
from pgqueue._schema import migrate

from . import bench_pgqueue
from .common import Figures, Server, Sizes, log

#: What ``without`` lacks (see the module docstring).
WITHOUT_WORKFLOWS = """
DROP TRIGGER task_dependents_ended ON pgqueue.task;
DROP TRIGGER task_dependents_batch ON pgqueue.task;
DROP TRIGGER task_new_dependent ON pgqueue.task;
DROP INDEX pgqueue.task_waiting;
"""

#: (figure with workflows, the same without, least ratio wanted)
TARGETS = tuple(
    (f"{figure}, with workflows", f"{figure}, without", 0.97)
    for figure in ("enqueue one", "enqueue bulk", "drain")
)


def _round(dsn: str, label: str, sizes: Sizes, tasks: int, result: Figures) -> None:
    with TaskBackend(dsn, registry=bench_pgqueue.registry()) as backend:
        backend.queue_task("noop")  # open the pool
        result.add(f"enqueue one, {label}", bench_pgqueue.enqueue_one(backend, sizes.single))
        with connect(dsn) as conn:
            conn.execute("DELETE FROM pgqueue.task")
        bulk, _ = bench_pgqueue.enqueue_bulk(backend, tasks, sizes.batch)
        result.add(f"enqueue bulk, {label}", bulk)
    result.add(f"drain, {label}", bench_pgqueue.drain(dsn, tasks, sizes.concurrency))
    with connect(dsn) as conn:
        conn.execute("DELETE FROM pgqueue.task")
        conn.execute("VACUUM ANALYZE pgqueue.task")


def run(server: Server, sizes: Sizes, tasks: int) -> Figures:
    """``sizes.repeat`` rounds of every figure on both databases, A B, then B A."""
    with_dsn = server.fresh_database("bench_workflows_on")
    without_dsn = server.fresh_database("bench_workflows_off")
    for dsn in (with_dsn, without_dsn):
        migrate(dsn, "pgqueue")
    with connect(without_dsn) as conn:
        conn.execute(WITHOUT_WORKFLOWS)
    result = Figures(tasks)
    pair = [(with_dsn, "with workflows"), (without_dsn, "without")]
    for attempt in range(sizes.repeat):
        log(f"dependency-free workload: run {attempt + 1}/{sizes.repeat}")
        for dsn, label in pair if attempt % 2 == 0 else pair[::-1]:
            _round(dsn, label, sizes, tasks, result)
    return result

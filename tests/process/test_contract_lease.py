"""Issue 12 item 1 (F21) with ``--hard-time-limits``: a worker that finds at its heartbeat that
it lost its lease on a thread job that never checks ends its process, so the thread dies.

Without hard time limits such a thread runs on until it returns (Python cannot kill a thread;
its outcome is dropped); with them the process exits 75 (``EXIT_REPLACE``) at its first beat
after resuming, so the overlap with the replacement execution is bounded by one heartbeat
interval there too. Executions record their intervals in ``contract_runs``
(:mod:`tests.support.contract_jobs`).
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from pgqueue import TaskBackend, states
from pgqueue._exits import EXIT_REPLACE
from tests.support import contract
from tests.support.crash import task_row, wait_status, wait_until
from tests.support.fixtures import sql

#: The contract tests' shared fixtures (tests.support.contract).
cdsn = contract.cdsn
client = contract.client
procs = contract.procs
JOBS = contract.JOBS

LEASE = 2.0


def runs(dsn: str, task_id: str) -> list[dict[str, Any]]:
    return sql(dsn, "SELECT * FROM contract_runs WHERE task_id = %s ORDER BY run", (task_id,))


@pytest.mark.timeout(120)
def test_lease_lost_with_hard_time_limits_ends_the_process_of_a_thread_that_never_checks(
    cdsn: str, client: TaskBackend, procs: Any
) -> None:
    """A worker with ``--hard-time-limits`` runs a thread job that never checks; it is frozen
    past its lease and its task rescued (FAILURE "worker lost") by a second worker. Correct:
    after SIGCONT the worker exits 75 within about one heartbeat interval, its thread dies with
    it (the execution's ``last_seen`` stops moving), and the rescued row is left as it was."""
    frozen = procs(cdsn, "--lease", str(LEASE), "--hard-time-limits")
    task_id = client.queue_task("slow_sibling", seconds=60.0)
    assert task_id is not None
    wait_until(lambda: runs(cdsn, task_id), 20, "the execution to start")
    procs(cdsn, "--lease", str(LEASE))  # the rescuer
    frozen.signal(signal.SIGSTOP)
    try:
        rescued = wait_status(cdsn, task_id, {states.FAILURE}, timeout=LEASE * 6)
        assert "worker lost" in rescued["error"]
    finally:
        frozen.signal(signal.SIGCONT)
    resumed = time.monotonic()
    assert frozen.wait(LEASE / 4 + 10) == EXIT_REPLACE, frozen.log
    assert time.monotonic() - resumed < LEASE / 4 + 5, "the process did not end promptly"
    assert "lost its lease on 1 running tasks" in frozen.log
    seen = runs(cdsn, task_id)[0]["last_seen"]
    time.sleep(0.5)
    assert runs(cdsn, task_id)[0]["last_seen"] == seen, "the thread ran on"
    assert task_row(cdsn, task_id)["error"] == rescued["error"]

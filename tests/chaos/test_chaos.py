"""A short chaos run (:mod:`tests.chaos`) on the test server: random SIGKILL/SIGTERM of real
workers and restarts/outages of PostgreSQL; every crash-safety invariant must hold."""

from __future__ import annotations

import logging
import time

import pytest

from tests.chaos.chaos import Chaos
from tests.support.crash import make_runs_table
from tests.support.fixtures import Server


@pytest.mark.slow
def test_chaos_keeps_every_invariant(dsn: str, pg_server: Server) -> None:
    if pg_server.embedded is None:
        pytest.skip("restarts need the embedded server (PGQUEUE_TEST_DSN is set)")
    embedded = pg_server.embedded
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)

    def outage(seconds: float) -> None:
        embedded._pg_ctl(["-w", "-m", "fast", "stop"])
        time.sleep(seconds)
        embedded._pg_ctl(["-w", "restart"])
        embedded._refresh()

    make_runs_table(dsn)
    chaos = Chaos(dsn, workers=3, lease=2.0, restart=pg_server.restart, outage=outage, seed=7)
    report = chaos.run(20.0)
    assert report.violations == []
    assert report.tasks > 50
    assert report.sigkills + report.sigterms >= 2
    assert report.restarts + report.outages >= 1
    assert set(report.states) <= {"SUCCESS", "FAILURE", "REVOKED"}


@pytest.mark.timeout(420)
def test_chaos_with_stalls_and_blocked_heartbeats_keeps_every_invariant(dsn: str) -> None:
    """The chaos run's events of issue 12 (no server restarts, to keep it short): workers
    frozen (SIGSTOP) for twice the lease and registry rows held FOR UPDATE for twice the lease,
    besides SIGKILL/SIGTERM. Correct: every invariant holds, including that no two executions
    of a lock_id overlap by more than one heartbeat interval after a frozen worker resumes."""
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    make_runs_table(dsn)
    chaos = Chaos(
        dsn, workers=3, lease=2.0, restart=None, outage=None, seed=12, contract_events=True
    )
    report = chaos.run(20.0)
    assert report.stalls + report.blocked_heartbeats >= 2
    assert report.violations == [], report
    assert set(report.states) <= {"SUCCESS", "FAILURE", "REVOKED"}

"""Short chaos runs (:mod:`tests.chaos`): random SIGKILL/SIGTERM of real workers and
restarts/outages of the test server; and the events of issue 12 (stalls, blocked heartbeats, a
full NOTIFY queue) on the run's own server. Every crash-safety invariant must hold."""

from __future__ import annotations

import logging
import time

import psycopg
import pytest

from pgqueue._schema import migrate
from tests.chaos.chaos import NOTIFY_QUEUE_PAGES, Chaos, own_server, replicated_servers
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
def test_chaos_with_contract_events_keeps_every_invariant() -> None:
    """The chaos run's events of issue 12 on its own server (no restarts, to keep it short):
    workers frozen (SIGSTOP) for twice the lease, registry rows held FOR UPDATE for twice the
    lease, and the NOTIFY queue filled behind a listener idle in a transaction and held full
    for twice the lease (F27), besides SIGKILL/SIGTERM. Correct: every invariant holds,
    including that no two executions of a lock_id overlap by more than one heartbeat interval
    after a frozen worker resumes, that enqueue never fails while the NOTIFY queue is full, and
    that the queue drains once its holder's transaction ends."""
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    try:
        dsn, _, _, stop = own_server(NOTIFY_QUEUE_PAGES)
    except psycopg.errors.UndefinedObject:
        pytest.skip("max_notify_queue_pages needs PostgreSQL 17 or later")
    try:
        migrate(dsn, "pgqueue")
        make_runs_table(dsn)
        chaos = Chaos(
            dsn,
            workers=3,
            lease=2.0,
            restart=None,
            outage=None,
            seed=12,
            contract_events=True,
            notify_flood=True,
        )
        report = chaos.run(20.0)
    finally:
        stop()
    assert report.stalls + report.blocked_heartbeats >= 2
    assert report.notify_floods >= 1 and report.worst_notify_usage > 0.9
    assert report.queued_while_flooded > 0
    assert report.enqueue_failures == 0
    assert report.violations == [], report
    assert set(report.states) <= {"SUCCESS", "FAILURE", "REVOKED"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_chaos_with_repeated_failovers_keeps_every_invariant() -> None:
    """Workers, producer and checks on a primary and a synchronous standby (multi-host DSN,
    ``target_session_attrs=read-write``); besides SIGKILL/SIGTERM of workers, the primary is
    killed and the standby promoted, then the dead primary rebuilt as the new standby, at
    least twice. Every invariant holds: every task ends in one terminal state, none is lost,
    and a task runs again only after its worker died or gave it back, or a failover."""
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    dsn, failover, stop = replicated_servers()
    try:
        make_runs_table(dsn)
        chaos = Chaos(
            dsn, workers=3, lease=3.0, restart=None, outage=None, seed=15, failover=failover
        )
        report = chaos.run(20.0, min_failovers=2)
    finally:
        stop()
    assert report.failovers >= 2, report
    assert report.violations == [], report
    assert report.tasks > 50
    assert set(report.states) <= {"SUCCESS", "FAILURE", "REVOKED"}

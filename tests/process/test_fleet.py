"""Many worker processes, each its own identity as if on its own host, through ONE PgBouncer in
transaction pooling mode (``benchmarks/fleet.py`` at a small size): every task ends SUCCESS
after exactly one attempt, and PostgreSQL never sees more backends than PgBouncer's pool."""

from __future__ import annotations

import os

import pytest

from benchmarks.common import Server as BenchServer
from benchmarks.fleet import run_one
from pgqueue import states
from tests.support.fixtures import Server

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/sbin/pgbouncer"), reason="needs pgbouncer (apt install pgbouncer)"
)

PROCESSES = 30
TASKS = 3_000
POOL = 5


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_fleet_through_one_pgbouncer_runs_every_task_once_within_the_pool(
    pg_server: Server,
) -> None:
    server = BenchServer(pg_server.admin_dsn)
    try:
        result = run_one(
            server, PROCESSES, TASKS, pool=POOL, pickup_samples=5, poll_timeout=1.0, timeout=90
        )
    finally:
        server.close()
    assert result.statuses == {states.SUCCESS: TASKS}, result.statuses
    assert result.rerun == 0
    assert result.exactly_once
    # 30 processes hold ~100 client connections to PgBouncer, but the server saw at most
    # the pool: claims, outcomes and heartbeats of all of them shared POOL backends
    assert result.samples > 20
    assert 0 < result.max_backends <= POOL, result.max_backends
    assert result.within_bound
    assert result.errors == []
    assert result.exit_codes == [0]  # every one stopped on SIGTERM
    assert len(result.pickup) == 5

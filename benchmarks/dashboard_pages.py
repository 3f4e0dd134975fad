"""Time the dashboard's pages on a large task table (issue 18: "it must stay fast on millions
of rows"; measure them on 5 million finished tasks).

Test-only: starts a throwaway embedded PostgreSQL, migrates it, fills the task table with
``--rows`` finished tasks in one ``INSERT ... SELECT generate_series`` (2% FAILURE, 0.2%
REVOKED, five jobs, three queues, 100 tasks finished per second of history, so 5,000,000 rows
span the last 14 hours) plus a few hundred live ones (QUEUED, some delayed by an hour, RETRY,
STARTED), 50 workers, 20 schedules and 2,000 lines of audit trail; ANALYZEs, and requests
every page in-process (Starlette's TestClient, so no network in the numbers), printing the
median of ``--repeat`` runs per page. Nothing is left behind, unless ``--keep DIR`` names a
directory to keep the filled server in (a later run with the same ``--keep`` reuses it as it
is and skips the fill, unless ``--migrate`` upgrades its schema first; it is stopped at the end
either way). Each page's first request is shown apart: the charts' first one after a fill sums
up the finished tasks of the last eight days (revision pgqueue_0016_ended_per_minute), which the
later ones do not repeat.

    python benchmarks/dashboard_pages.py --rows 5000000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from pgqueue._dashboard.app import create_app
from pgqueue._db import connect
from pgqueue._embedded import EmbeddedPostgres
from pgqueue._schema import migrate

FILL = """
INSERT INTO pgqueue.task (name, queue, status, kwargs, attempts, time_queued, run_at,
                          time_started, time_ended, worker, error, result)
SELECT 'job' || (i %% 5), 'q' || (i %% 3),
       CASE WHEN i %% 50 = 0 THEN 2 WHEN i %% 500 = 7 THEN 3 ELSE 1 END,
       jsonb_build_object('n', i, 'user', i %% 1000), 1,
       now() - i * interval '10 ms', now() - i * interval '10 ms',
       now() - i * interval '10 ms' + interval '1 ms',
       now() - i * interval '10 ms' + interval '5 ms',
       'bench', CASE WHEN i %% 50 = 0 THEN 'RuntimeError: bench' END,
       CASE WHEN i %% 50 <> 0 THEN to_jsonb(i) END
FROM generate_series(1, %(rows)s::integer) AS i
"""

LIVE = """
INSERT INTO pgqueue.task (name, queue, kwargs, run_at)
SELECT 'job' || (i %% 5), 'q' || (i %% 3), jsonb_build_object('n', -i),
       now() + (i %% 2) * interval '1 hour'
FROM generate_series(1, 300) AS i;
UPDATE pgqueue.task SET status = 5, attempts = 1, time_started = now(), worker = 'bench-1'
WHERE id IN (SELECT id FROM pgqueue.task WHERE status = 6 AND run_at <= now() LIMIT 20);
UPDATE pgqueue.task SET status = 4, attempts = 1, error = 'retry'
WHERE id IN (SELECT id FROM pgqueue.task WHERE status = 6 AND run_at <= now() LIMIT 10);
INSERT INTO pgqueue.worker (id, hostname, pid, queues, backlog, lease_seconds)
SELECT 'bench-' || i, 'host' || (i %% 5), 1000 + i, ARRAY['q0', 'q1', 'q2'], 4, 30
FROM generate_series(1, 50) AS i;
INSERT INTO pgqueue.schedule (name, run_every, anchor, next_tick, runs_count)
SELECT 'periodic' || i, i * interval '1 minute', now(), now() + i * interval '1 minute', i
FROM generate_series(1, 20) AS i;
INSERT INTO pgqueue.operator_action (actor, action, task_id, detail)
SELECT 'bench@host', 'retry', NULL, jsonb_build_object('n', i)
FROM generate_series(1, 2000) AS i;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep (or reuse) the filled server here")
    parser.add_argument(
        "--migrate", action="store_true", help="upgrade a reused server's schema first"
    )
    options = parser.parse_args()
    if options.keep is not None:
        server = EmbeddedPostgres(options.keep)
        try:
            run(server.dsn, options.rows, options.repeat, options.migrate)
        finally:
            server.stop()
        return
    with tempfile.TemporaryDirectory(prefix="pgqueue-dashboard-bench-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pgdata", delete=True)
        try:
            run(server.dsn, options.rows, options.repeat)
        finally:
            server.stop()


def fill(dsn: str, rows: int, upgrade: bool) -> None:
    """Migrate and write ``rows`` finished tasks and the live ones, once per server (a kept
    one is used as it is, so an older checkout of pgqueue can time its pages on it too, unless
    ``upgrade``: then it is migrated to this checkout's schema)."""
    with connect(dsn) as conn:
        found = conn.execute("SELECT to_regclass('pgqueue.worker') IS NOT NULL AS ok").fetchall()
        if found[0]["ok"] and conn.execute("SELECT 1 FROM pgqueue.worker LIMIT 1").fetchall():
            print("reusing the filled server" + (", migrated" if upgrade else ""))
            if upgrade:
                migrate(dsn, "pgqueue")
            return
    migrate(dsn, "pgqueue")
    started = time.perf_counter()
    with connect(dsn) as conn:
        conn.execute(FILL, {"rows": rows})
        for statement in LIVE.split(";\n"):
            if statement.strip():
                conn.execute(statement, {})
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE pgqueue.task")
    print(f"{rows:,} finished tasks written and analyzed in {time.perf_counter() - started:.1f}s")


def run(dsn: str, rows: int, repeat: int, upgrade: bool = False) -> None:
    fill(dsn, rows, upgrade)
    with connect(dsn) as conn:
        some = conn.execute("SELECT id::text AS id FROM pgqueue.task WHERE status = 2 LIMIT 1")
        failed = str(some.fetchall()[0]["id"])
    pages = [
        "/",
        "/?range=day",
        "/?range=week",
        "/tasks",
        "/tasks?state=FAILURE",
        "/tasks?state=SUCCESS",
        "/tasks?state=QUEUED",
        "/tasks?state=STARTED&state=RETRY",
        "/tasks?state=FAILURE&state=REVOKED&job=job0",
        "/tasks?job=job3",
        "/tasks?queue=q1&page=50",
        "/tasks?since=5m",
        "/tasks?sort=queued_asc",
        "/tasks?sort=queued",
        '/tasks?args={"user": 7}',
        f"/tasks?id={failed[:8]}",
        f"/tasks/{failed}",
        "/workers",
        "/workers?all=1",
        "/schedules",
        "/actions",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        with TestClient(create_app(dsn)) as client:
            print(f"{'page':<48} {'first':>9} {'median':>9} {'status':>6}")
            for path in pages:
                times = []
                status = 0
                for _ in range(repeat):
                    begun = time.perf_counter()
                    status = client.get(path, follow_redirects=False).status_code
                    times.append(time.perf_counter() - begun)
                first, median = times[0] * 1000, statistics.median(times) * 1000
                print(f"{path:<48} {first:>7.0f}ms {median:>7.0f}ms {status:>6}")


if __name__ == "__main__":
    main()

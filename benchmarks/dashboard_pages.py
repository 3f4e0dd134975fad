"""Time the dashboard's pages on a large task table (issue 18: "it must stay fast on millions
of rows").

Test-only: starts a throwaway embedded PostgreSQL, migrates it, fills the task table with
``--rows`` finished tasks in one ``INSERT ... SELECT generate_series`` (2% FAILURE, five jobs,
three queues, a minute of history per 6,000 rows) plus a few hundred live ones, ANALYZEs, and
requests each page in-process (Starlette's TestClient, so no network in the numbers), printing
the median of ``--repeat`` runs per page. Nothing is left behind.

    python benchmarks/dashboard_pages.py --rows 1000000
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
SELECT 'job' || (i %% 5), 'q' || (i %% 3), CASE WHEN i %% 50 = 0 THEN 2 ELSE 1 END,
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
FROM generate_series(1, 300) AS i
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgqueue-dashboard-bench-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pgdata", delete=True)
        try:
            run(server.dsn, options.rows, options.repeat)
        finally:
            server.stop()


def run(dsn: str, rows: int, repeat: int) -> None:
    migrate(dsn, "pgqueue")
    started = time.perf_counter()
    with connect(dsn) as conn:
        conn.execute(FILL, {"rows": rows})
        conn.execute(LIVE, {})
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE pgqueue.task")
        some = conn.execute("SELECT id::text AS id FROM pgqueue.task WHERE status = 2 LIMIT 1")
        failed = str(some.fetchall()[0]["id"])
    print(f"{rows:,} finished tasks written and analyzed in {time.perf_counter() - started:.1f}s")
    pages = [
        "/",
        "/tasks",
        "/tasks?state=FAILURE",
        "/tasks?state=FAILURE&state=REVOKED&job=job0",
        "/tasks?queue=q1&page=50",
        "/tasks?sort=queued_asc",
        '/tasks?args={"user": 7}',
        f"/tasks?id={failed[:8]}",
        f"/tasks/{failed}",
        "/workers",
        "/actions",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        with TestClient(create_app(dsn)) as client:
            print(f"{'page':<48} {'median':>9} {'status':>6}")
            for path in pages:
                times = []
                status = 0
                for _ in range(repeat):
                    begun = time.perf_counter()
                    status = client.get(path, follow_redirects=False).status_code
                    times.append(time.perf_counter() - begun)
                print(f"{path:<48} {statistics.median(times) * 1000:>7.0f}ms {status:>6}")


if __name__ == "__main__":
    main()

"""What PostgreSQL itself does on this server (pgbench), the ceiling the queues are held to.

Four custom scripts on a minimal job table: one INSERT per commit, a 100-row INSERT per commit,
and a whole job lifecycle (insert, claim with SKIP LOCKED, finish) with 1 job per statement on 4
clients and 100 jobs per statement on 2 clients. Each figure is jobs (rows) per second.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from pgqueue._db import connect

SCHEMA = """
CREATE TABLE bench_job (
    id      bigserial PRIMARY KEY,
    status  smallint NOT NULL DEFAULT 0,
    worker  integer,
    payload jsonb NOT NULL DEFAULT '{}',
    created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bench_job_queued ON bench_job (id) WHERE status = 0;
CREATE INDEX bench_job_running ON bench_job (worker) WHERE status = 1;
"""

INSERT = "INSERT INTO bench_job (payload) SELECT '{}' FROM generate_series(1, :n);\n"
LIFECYCLE = INSERT + (
    "UPDATE bench_job SET status = 1, worker = :client_id WHERE id IN (SELECT id FROM bench_job"
    " WHERE status = 0 ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED);\n"
    "UPDATE bench_job SET status = 2 WHERE status = 1 AND worker = :client_id;\n"
)


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    script: str
    jobs_per_tx: int
    clients: int


SCENARIOS = (
    Scenario("insert_1", "pgbench: one INSERT per commit", INSERT, 1, 1),
    Scenario("insert_100", "pgbench: 100-row INSERT per commit", INSERT, 100, 1),
    Scenario(
        "cycle_1", "pgbench: insert+claim+finish, 1 job/statement, 4 clients", LIFECYCLE, 1, 4
    ),
    Scenario(
        "cycle_100",
        "pgbench: insert+claim+finish, 100 jobs/statement, 2 clients",
        LIFECYCLE,
        100,
        2,
    ),
)


def run(bin_dir: Path, dsn: str, seconds: float) -> dict[str, float]:
    """Jobs/s of each scenario (key -> rate) on the fresh database ``dsn``."""
    with connect(dsn) as conn:
        conn.execute(SCHEMA)
    out = {}
    for scenario in SCENARIOS:
        with connect(dsn) as conn:
            conn.execute("TRUNCATE bench_job")
            conn.execute("VACUUM ANALYZE bench_job")
        tps = transactions_per_second(
            bin_dir,
            dsn,
            scenario.script,
            seconds,
            clients=scenario.clients,
            variables={"n": str(scenario.jobs_per_tx)},
        )
        out[scenario.key] = tps * scenario.jobs_per_tx
    return out


def transactions_per_second(
    bin_dir: Path,
    dsn: str,
    script: str,
    seconds: float,
    *,
    clients: int,
    variables: dict[str, str] | None = None,
) -> float:
    """Run the pgbench ``script`` (one transaction per run of it) on ``clients`` clients for
    ``seconds`` (rounded, at least 1) against ``dsn``; return pgbench's transactions per
    second. Raises RuntimeError when pgbench fails."""
    params = conninfo_to_dict(dsn)
    args = [str(bin_dir / "pgbench"), "-n", "-T", str(max(1, round(seconds)))]
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if params.get(key):
            args += [flag, str(params[key])]
    args += ["-c", str(clients), "-j", str(min(clients, 4))]
    for name, value in (variables or {}).items():
        args += ["-D", f"{name}={value}"]
    env = {"PGPASSWORD": str(params["password"])} if params.get("password") else {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.sql"
        path.write_text(script)
        proc = subprocess.run(
            [*args, "-f", str(path), str(params["dbname"])],
            capture_output=True,
            text=True,
            env={**_base_env(), **env},
            check=False,
        )
    found = re.search(r"tps = ([\d.]+)", proc.stdout)
    if proc.returncode or not found:
        raise RuntimeError(f"pgbench failed: {proc.stderr.strip() or proc.stdout}")
    return float(found.group(1))


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)

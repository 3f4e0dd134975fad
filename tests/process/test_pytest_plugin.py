"""The pytest plugin shipped in the package (issue 17), tested the way a user meets it: a
small project (tests/sample_project: its own jobs, code and pytest suite) runs its suite in a
subprocess, with pgqueue's plugin loaded from the installed entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import Server

#: Seconds per test (subprocesses, real workers): not in the quick loop.
pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "support" / "sample_project"


def _run_sample(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PGQUEUE_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=SAMPLE,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=280,
    )


@pytest.mark.timeout(300)
def test_the_sample_projects_suite_passes_on_a_given_server(pg_server: Server) -> None:
    out = _run_sample(PGQUEUE_TEST_DSN=pg_server.admin_dsn)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 passed" in out.stdout


@pytest.mark.timeout(300)
def test_the_sample_projects_suite_passes_on_an_embedded_server() -> None:
    out = _run_sample()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 passed" in out.stdout

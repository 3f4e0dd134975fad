"""The suite's own guards (tests/support/guards.py) end hung tests: each snippet below hangs in
a way pytest-timeout's signal alone cannot end, runs in a pytest subprocess with a 2 s timeout
and a 3 s backstop, and that run must end with a failure and every thread's stack."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.fixtures import ROOT, cli_env
from tests.support.guards import HUNG

SNIPPETS = {
    "swallows_the_timeout": """
import time

def test_swallows_the_timeout():
    while True:
        try:
            time.sleep(60)
        except BaseException:
            pass
""",
    "alarm_blocked": """
import signal, time

def test_alarm_blocked():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(600)
""",
    "loop_never_closes": """
import asyncio
from concurrent.futures import ThreadPoolExecutor

async def stubborn():
    while True:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass

async def main():
    asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)

def test_loop_never_closes():
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()
""",
}

NON_DAEMON_THREAD = """
import threading

def test_leaves_a_thread():
    threading.Thread(target=threading.Event().wait, name="left-behind").start()
"""


OPTIONS = ["-o", "timeout_backstop=3", "-p", "no:cacheprovider", "-p", "no:randomly"]


def run_pytest(
    tmp_path: Path, source: str, timeout: int = 2
) -> tuple[subprocess.CompletedProcess[str], float]:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.support.guards"]\n')
    (tmp_path / "test_snippet.py").write_text(source)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "test_snippet.py", "--timeout", str(timeout), *OPTIONS],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ROOT.is_dir()
    return done, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_a_hung_test_ends_the_run_with_every_stack(tmp_path: Path, name: str) -> None:
    done, took = run_pytest(tmp_path, SNIPPETS[name])
    output = done.stdout + done.stderr
    assert done.returncode == HUNG, output
    assert f"test_snippet.py::test_{name} still running 5 s after it started" in output
    assert "stacks of all threads" in output and "most recent call first" in output
    assert f"in test_{name}" in output, output  # the hung frame is in the dump
    assert took < 30


@pytest.mark.slow
def test_a_thread_left_running_fails_the_test_and_cannot_keep_the_run_alive(
    tmp_path: Path,
) -> None:
    done, took = run_pytest(tmp_path, NON_DAEMON_THREAD, timeout=10)  # > the leak grace
    output = done.stdout + done.stderr
    assert "the test left behind: thread 'left-behind' (daemon=False)" in output, output
    assert "1 passed, 1 error" in output
    assert done.returncode == HUNG
    assert "the test run did not exit 3 s after it finished" in output
    assert "most recent call first" in output
    assert took < 30

"""``pgqueue dashboard`` as a real process on a free port, for the tests that read its pages
through PgBouncer or from a standby."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.fixtures import bin_path, cli_env
from tests.support.pgbouncer_support import free_port


@contextmanager
def dashboard(dsn: str, *options: str) -> Iterator[tuple[str, list[str]]]:
    """Run ``pgqueue dashboard`` on ``dsn``; yield ``(url, output)``, where ``output`` gets
    the process's output once it has been stopped (SIGTERM) at the end of the block."""
    port = free_port()
    process = subprocess.Popen(
        [bin_path("pgqueue"), "dashboard", "--port", str(port), *options],
        env=cli_env(dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                urllib.request.urlopen(url + "/static/dashboard.css", timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not start"
                time.sleep(0.1)
        yield url, output
    finally:
        process.terminate()
        output.append(process.communicate(timeout=30)[0])

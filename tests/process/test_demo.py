"""``pgqueue demo``: its job, a run against the test database, and the command as a user runs it.

The demo runs real ``pgqueue-worker`` processes; the file sets here are small (a few files in a
temporary directory) so each run takes seconds.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pgqueue import PgQueueError, TaskBackend
from pgqueue import _demo as demo_module
from pgqueue._db import connect
from pgqueue._demo import run_demo, source_files
from pgqueue._demo_summary import render_summary
from pgqueue.examples.stdlib_jobs import count_lines, inspect_source
from tests.support.fixtures import TEST_JOBS, bin_path, cli_env, run_cli, sql

GOOD = b'''"""A module."""

import os


class Reader:
    def read(self):
        return os.sep


def helper(x):
    return x


async def fetch():
    return 1
'''
#: No newline at the end: still two lines.
NO_NEWLINE = b"x = 1\ny = 2"
#: Python reads this as latin-1 because of its coding declaration.
LATIN_1 = b"# -*- coding: latin-1 -*-\nname = 'caf\xe9'\n\n\ndef greet():\n    return name\n"
BROKEN = b"def f(:\n    pass\n"


def make_tree(root: Path) -> dict[str, bytes]:
    """Write a small source tree; return the files the demo must inspect (relative path ->
    content). Files under site-packages and __pycache__, and non-.py files, are not among them."""
    files = {
        "good.py": GOOD,
        "pkg/no_newline.py": NO_NEWLINE,
        "pkg/latin.py": LATIN_1,
        "pkg/broken.py": BROKEN,
    }
    ignored = {
        "site-packages/dep.py": GOOD,
        "pkg/__pycache__/cached.py": GOOD,
        "notes.txt": b"not python",
    }
    for name, data in {**files, **ignored}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A private temporary directory. Not pytest's ``tmp_path``: concurrent pytest sessions
    on this machine prune each other's old ``pytest-N`` directories, which would pull the
    embedded server's data directory away while it runs."""
    with tempfile.TemporaryDirectory(prefix="pgqueue-demo-test-") as path:
        yield Path(path)


def definitions(data: bytes) -> int:
    """Top-level classes and functions, counted independently of the job."""
    return sum(
        isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.parse(data).body
    )


def demo(dsn: str, root: Path, log_dir: Path, **options: Any) -> tuple[Any, str]:
    """Run the demo with two workers; return its summary and what it and the summary printed."""
    out = io.StringIO()
    console = Console(file=out, width=200)
    summary = run_demo(
        dsn, root=root, workers=2, backlog=1, log_dir=log_dir, console=console, **options
    )
    render_summary(summary, console, str(root))
    return summary, out.getvalue()


def test_inspect_source_describes_a_file(scratch: Path) -> None:
    """The job on its own: lines, bytes, sha256 and definitions in source order."""
    path = scratch / "good.py"
    path.write_bytes(GOOD)
    result = inspect_source(None, path=str(path))  # the job does not use its consumer
    assert result["lines"] == GOOD.count(b"\n") == 16
    assert result["bytes"] == len(GOOD)
    assert result["sha256"] == hashlib.sha256(GOOD).hexdigest()
    assert result["definitions"] == [
        {"kind": "class", "name": "Reader", "line": 6},
        {"kind": "function", "name": "helper", "line": 11},
        {"kind": "async function", "name": "fetch", "line": 15},
    ]
    assert count_lines(b"") == 0
    assert count_lines(NO_NEWLINE) == 2


def test_inspect_source_raises_syntax_error_naming_file_and_line(scratch: Path) -> None:
    path = scratch / "broken.py"
    path.write_bytes(BROKEN)
    with pytest.raises(SyntaxError) as caught:
        inspect_source(None, path=str(path))  # the job does not use its consumer
    assert "broken.py, line 1" in str(caught.value)


def test_source_files_skip_installed_packages_and_caches(scratch: Path) -> None:
    files = make_tree(scratch)
    found = source_files(scratch)
    assert [p.relative_to(scratch).as_posix() for p in found] == sorted(files)
    assert source_files(scratch, limit=2) == found[:2]


@pytest.mark.slow
def test_demo_summary_matches_the_task_table(dsn: str, scratch: Path) -> None:
    """A run on a small tree: every file ends SUCCESS but the broken one, which ends FAILURE
    with its SyntaxError; the summary's numbers are those of the table and of the files."""
    root = scratch / "src"
    files = make_tree(root)
    summary, printed = demo(dsn, root, scratch / "logs")

    parsed = {name: data for name, data in files.items() if name != "pkg/broken.py"}
    by_state = sql(
        dsn,
        "SELECT s.name, count(*) AS n FROM pgqueue.task t JOIN pgqueue.state s "
        "ON s.code = t.status WHERE t.queue = 'demo' GROUP BY s.name",
    )
    assert {row["name"]: row["n"] for row in by_state} == {"SUCCESS": 3, "FAILURE": 1}
    assert {k: v for k, v in summary.states.items() if v} == {"SUCCESS": 3, "FAILURE": 1}
    assert summary.tasks == summary.finished == len(files)
    assert summary.lines == sum(count_lines(data) for data in parsed.values())
    assert summary.bytes == sum(len(data) for data in parsed.values())
    assert summary.definitions == sum(definitions(data) for data in parsed.values())
    assert summary.run_seconds is not None and summary.wall_seconds is not None
    assert summary.wall_seconds >= summary.run_seconds > 0
    assert summary.files_per_second == pytest.approx(summary.finished / summary.run_seconds)

    # Each result is that of its file, computed by a worker process, not this one.
    rows = sql(
        dsn,
        "SELECT kwargs->>'path' AS path, status, result, error, worker FROM pgqueue.task "
        "WHERE queue = 'demo'",
    )
    assert {Path(row["path"]).relative_to(root).as_posix() for row in rows} == set(files)
    for row in rows:
        data = Path(row["path"]).read_bytes()
        assert int(row["worker"].split(":")[1]) != os.getpid()
        if row["status"] == 1:
            assert row["result"]["sha256"] == hashlib.sha256(data).hexdigest()
            assert row["result"]["lines"] == count_lines(data)
    assert sum(summary.workers.values()) == len(files)
    assert set(summary.workers) == {row["worker"] for row in rows}

    # The broken file: FAILURE with the parser's reason, in the summary and in what it printed.
    assert len(summary.failures) == 1
    failure = summary.failures[0]
    assert failure["path"] == str(root / "pkg" / "broken.py")
    assert failure["state"] == "FAILURE"
    assert failure["error"].startswith("SyntaxError: ")
    assert "broken.py, line 1" in failure["error"]
    assert "pkg/broken.py" in printed and "SyntaxError" in printed
    assert [Path(row["path"]).name for row in summary.largest] == [
        "good.py",
        "latin.py",
        "no_newline.py",
    ]


@pytest.mark.slow
def test_demo_reruns_from_a_clean_slate(dsn: str, scratch: Path) -> None:
    """A second run empties the demo's queue first, and only that queue."""
    root = scratch / "src"
    make_tree(root)
    with TaskBackend(dsn, task_paths=[TEST_JOBS]) as backend:
        other = backend.queue_task("add", a=1, b=2)
    demo(dsn, root, scratch / "logs")
    first = {row["id"] for row in sql(dsn, "SELECT id FROM pgqueue.task WHERE queue = 'demo'")}

    summary, _ = demo(dsn, root, scratch / "logs", limit=2)
    second = sql(dsn, "SELECT id, kwargs->>'path' AS path FROM pgqueue.task WHERE queue = 'demo'")
    assert summary.tasks == len(second) == 2
    assert not first & {row["id"] for row in second}
    assert sorted(row["path"] for row in second) == [str(p) for p in source_files(root, 2)]
    assert sql(dsn, "SELECT status FROM pgqueue.task WHERE id = %s", (other,)) == [{"status": 6}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--path", "{scratch}/missing"], "is not a directory"),
        (["--path", "{scratch}/empty"], "no Python files (*.py) under"),
        (["--queue", "", "--path", "{scratch}/src"], "a queue name has 1 to 48 characters"),
    ],
)
@pytest.mark.slow
def test_demo_bad_input_is_a_clear_error(
    dsn: str, scratch: Path, args: list[str], message: str
) -> None:
    """Bad options give one ``error:`` line and exit status 2, and queue nothing."""
    make_tree(scratch / "src")
    (scratch / "empty" / "__pycache__").mkdir(parents=True)
    (scratch / "empty" / "__pycache__" / "cached.py").write_bytes(GOOD)
    given = [arg.format(scratch=scratch) for arg in args]
    result = run_cli(["pgqueue", "demo", *given], dsn)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task") == [{"n": 0}]


@pytest.mark.slow
def test_demo_command_without_dsn_runs_on_an_embedded_server(scratch: Path) -> None:
    """As a new user runs it: no DSN anywhere, an embedded server in --data-dir. Its data
    stays: ``--serve`` starts the server again, the tasks are there, Ctrl-C stops it."""
    root = scratch / "src"
    files = make_tree(root)
    data_dir = scratch / "demo-data"
    result = run_cli(
        ["pgqueue", "demo", "--data-dir", str(data_dir), "--path", str(root), "--workers", "2"],
        None,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"data in {data_dir / 'pgdata'}" in result.stdout
    assert "DSN: postgresql://" in result.stdout
    assert f"Queued {len(files)} tasks" in result.stdout
    assert "SyntaxError" in result.stdout and "pkg/broken.py" in result.stdout
    assert (data_dir / "logs" / "worker-2.log").exists()

    server = subprocess.Popen(
        [bin_path("pgqueue"), "demo", "--serve", "--data-dir", str(data_dir)],
        env=cli_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(3)]
        dsn = next(line for line in lines if line.startswith("DSN: "))[5:].strip()
        with connect(dsn) as conn:
            rows = conn.execute(
                "SELECT state, count(*) AS n FROM pgqueue.task_state WHERE queue = 'demo' "
                "GROUP BY state"
            ).fetchall()
        assert {row["state"]: row["n"] for row in rows} == {"SUCCESS": 3, "FAILURE": 1}
        server.send_signal(signal.SIGINT)
        assert server.wait(60) == 0, server.stderr.read() if server.stderr else ""
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_demo_reports_a_failed_worker_with_its_log(
    dsn: str, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process that exits with an error makes the demo fail, naming its log."""
    root = scratch / "src"
    make_tree(root)
    failing = [sys.executable, "-c", "import sys; print('cannot work today'); sys.exit(3)"]
    monkeypatch.setattr(demo_module, "worker_command", lambda: failing)
    with pytest.raises(PgQueueError) as caught:
        demo(dsn, root, scratch / "logs")
    message = str(caught.value)
    assert "exited with status 3: cannot work today" in message
    assert str(scratch / "logs" / "worker-") in message

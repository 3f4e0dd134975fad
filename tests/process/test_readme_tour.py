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


def readme_block(marker: str, page: str = "README.md") -> str:
    """The fenced code block that follows ``<!-- marker -->`` in the README, or in ``page``
    (a path from the project root, such as ``docs/guides/periodic.md``)."""
    text = README if page == "README.md" else (ROOT / page).read_text()
    match = re.search(rf"<!-- {re.escape(marker)} -->\n```\w*\n(.*?)```", text, re.S)
    assert match, f"{page} has no block marked {marker!r}"
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


def tour_commands() -> list[str]:
    """The tour's shell commands (blocks marked ``<!-- sh: tour-... -->``), in README order."""
    return [
        match.group(1).strip()
        for match in re.finditer(r"<!-- sh: tour-[\w-]+ -->\n```sh\n(.*?)```", README, re.S)
    ]


@pytest.mark.timeout(400)
def test_tour_word_for_word_on_a_fresh_machine(tmp_path: Path) -> None:
    """A new user's run of the tour: no database and no earlier demo (a fresh user data
    directory), each command typed as the README shows it, in the README's order. The two
    that keep running (the demo's server, the worker) stay up in their own "terminals"; each
    other command must finish on its own, so a step that waits for a later one fails."""
    commands = tour_commands()
    assert commands == [
        "pgqueue demo --serve",
        "pgqueue migrate",
        "pgqueue-worker --task-paths myapp.jobs",
        "python enqueue.py",
    ]
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(readme_block("file: myapp/jobs.py"))
    (tmp_path / "enqueue.py").write_text(readme_block("file: enqueue.py"))
    env = cli_env(None, XDG_DATA_HOME=str(tmp_path / "data"))
    background: list[subprocess.Popen[str]] = []
    outputs: list[str] = []
    dsn = ""
    try:
        for command in commands:
            program, *args = command.split()
            argv = [sys.executable if program == "python" else bin_path(program), *args]
            if program == "pgqueue" and args[:2] == ["demo", "--serve"]:
                server = subprocess.Popen(
                    argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
                )
                background.append(server)
                assert server.stdout is not None
                for _ in range(5):
                    line = server.stdout.readline()
                    if line.startswith("In your other terminals: export PGQUEUE_DSN="):
                        dsn = line.split("=", 1)[1].strip().strip("'")
                        break
                assert dsn.startswith("postgresql://"), "the server printed no export line"
                env["PGQUEUE_DSN"] = dsn
            elif program == "pgqueue-worker":
                worker = subprocess.Popen(
                    argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
                )
                background.append(worker)
            else:
                done = subprocess.run(
                    argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
                )
                assert done.returncode == 0, f"{command}: {done.stderr}"
                outputs.append(done.stdout)
        assert "again:  None" in outputs[-1]
        rows = sql(dsn, readme_block("sql: tour"))
        assert [(r["name"], r["state"]) for r in rows] == [
            ("resize", "SUCCESS"),
            ("report", "SUCCESS"),
        ]
    finally:
        for process in reversed(background):
            process.send_signal(
                signal.SIGINT if process.args[1:3] == ["demo", "--serve"] else signal.SIGTERM
            )
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
    assert [process.returncode for process in background] == [0, 0]

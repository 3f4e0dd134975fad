"""Operators' bugs of issue 18: secrets out of ``ps`` and out of reach of an empty token, and
the command lines' answers to bad input and outages."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path

from psycopg.conninfo import make_conninfo

from pgqueue import TaskBackend, states

from . import test_dashboard
from .conftest import bin_path, cli_env, run_cli
from .test_dashboard import http

start_dashboard = test_dashboard.start_dashboard  # the fixture, shared

JOBS = "tests.ops_bugs_jobs"


# --- the dashboard's token ---------------------------------------------------------------


def test_dashboard_refuses_an_empty_or_blank_token_beyond_loopback(dsn: str) -> None:
    for token in ("", "   "):
        done = run_cli(
            ["pgqueue", "dashboard", "--host", "0.0.0.0", "--port", "1", "--token", token],
            dsn,
            timeout=30,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: the dashboard token is empty"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_dashboard_refuses_an_empty_token_from_the_environment_or_a_file(
    dsn: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for args, env in [
        (["--token-file", str(empty)], {}),
        ([], {"PGQUEUE_DASHBOARD_TOKEN": " "}),
    ]:
        done = run_cli(
            ["pgqueue", "dashboard", "--host", "0.0.0.0", "--port", "1", *args],
            dsn,
            timeout=30,
            **env,
        )
        assert done.returncode == 2, done.stderr
        assert "the dashboard token is empty" in done.stderr


def test_dashboard_reads_its_token_from_a_file_kept_out_of_ps(
    start_dashboard: Callable[..., str], tmp_path: Path
) -> None:
    secret = "file-secret-7c1d"
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    url = start_dashboard("--token-file", str(token_file))
    assert http(url + "/")[0] == 401
    basic = base64.b64encode(f"ops:{secret}".encode()).decode()
    assert http(url + "/", headers={"Authorization": f"Basic {basic}"})[0] == 200
    assert http(url + "/", headers={"Authorization": f"Bearer {secret}"})[0] == 200
    assert http(url + "/", headers={"Authorization": "Bearer wrong"})[0] == 401
    both = run_cli(["pgqueue", "dashboard", "--token", "x", "--token-file", str(token_file)], None)
    assert both.returncode == 2 and "--token or --token-file" in both.stderr


# --- the worker's DSN --------------------------------------------------------------------


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def run_one_task(dsn: str, queue: str) -> None:
    with TaskBackend(dsn, task_paths=[JOBS]) as client:
        task_id = client.queue_task("echo", text="hi", queue=queue)
        done = client.wait_for_task(str(task_id), timeout=30)
    assert done is not None and done.status == states.SUCCESS


def test_a_worker_given_dsn_with_a_password_does_not_show_it_in_ps(dsn: str) -> None:
    password = "pw-in-argv-5e2b"
    with_password = make_conninfo(dsn, password=password)
    for extra in ([], ["--processes", "1"]):
        queue = f"argv{len(extra)}"
        proc = subprocess.Popen(
            [bin_path("pgqueue-worker"), "--task-paths", JOBS, "--queues", queue,
             "--dsn", with_password, "--log-level", "WARNING", *extra],
            env=cli_env(None),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            run_one_task(dsn, queue)  # the worker runs, with the DSN it was given
            args = cmdline(proc.pid)
            assert not [arg for arg in args if password in arg], args
            assert "--dsn" not in args
            assert f"--queues={queue}" in args or queue in args
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert password not in err

"""The command-line programs given bad arguments and odd DSNs: one ``error:`` line, a
documented exit status (see ``pgqueue._cli_common``), no traceback, never a password."""

from __future__ import annotations

import pytest

from pgqueue import TaskBackend
from pgqueue._cli_common import EXIT_UNAVAILABLE, EXIT_USAGE
from tests.support.fixtures import run_cli

SECRET = "s3cretpw"


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("bad_dsn", "code"),
    [
        # libpq quotes the token it cannot parse, which here is the password itself
        (f"postgresql://u:{SECRET}%zz@127.0.0.1/x", EXIT_USAGE),
        (f"postgresql://u:{SECRET}%pw@[::1", EXIT_USAGE),
        (f"host=127.0.0.1 password={SECRET} junk", EXIT_USAGE),
        (f"host=127.0.0.1 password='{SECRET} x' junk", EXIT_USAGE),
        (f"postgresql://u@127.0.0.1/x?password={SECRET}&junk", EXIT_USAGE),
        (f"postgresql://u:{SECRET}@127.0.0.1:1/x", EXIT_UNAVAILABLE),
    ],
)
@pytest.mark.slow
@pytest.mark.parametrize("command", [["pgqueue", "list"], ["pgqueue-worker", "--burst"]])
def test_a_bad_dsn_never_shows_its_password(bad_dsn: str, code: int, command: list[str]) -> None:
    args = [*command, "--dsn", bad_dsn]
    if command[0] == "pgqueue-worker":
        args += ["--task-paths", "tests.support.jobs"]
    done = run_cli(args, None)
    assert done.returncode == code, done.stderr
    _one_error_line(done.stderr)
    assert SECRET not in done.stdout + done.stderr


def test_list_with_a_megabyte_error_stays_quick(dsn: str, backend: TaskBackend) -> None:
    """A task whose error is 5 MB (here a revoke reason) made ``pgqueue list`` lay out the
    whole text in a table cell: minutes of CPU. The table shows its first line, cut."""
    task_id = backend.queue_task("add", a=1, b=1)
    assert task_id is not None
    backend.revoke(task_id, reason="boom " * 1_000_000)
    done = run_cli(["pgqueue", "list"], dsn, timeout=30)
    assert done.returncode == 0, done.stderr
    assert task_id in done.stdout and "boom boom" in done.stdout
    assert len(done.stdout) < 20_000
    full = run_cli(["pgqueue", "list", "--json"], dsn, timeout=30)
    assert full.returncode == 0 and full.stdout.count("boom") == 1_000_000


def test_a_duration_too_long_for_the_database_is_a_usage_error(dsn: str) -> None:
    """``--since 99999999999d`` used to reach the server ("interval out of range"), reported
    as a refused statement with advice to run ``pgqueue migrate``."""
    done = run_cli(["pgqueue", "list", "--since", "99999999999d"], dsn)
    assert done.returncode == EXIT_USAGE
    assert "too long" in _one_error_line(done.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["queue", "add", "a=1", "b=1", "--queue", ""],
        ["queue", "add", "a=1", "b=1", "--queue", "q" * 49],
        ["queue", "add", "a=1", "b=1", "--priority", "99999999999"],
        ["queue", "add", 'a="x\\u0000y"', "b=1"],
    ],
    ids=["empty-queue", "long-queue", "huge-priority", "nul-in-json"],
)
@pytest.mark.slow
def test_queue_command_refuses_bad_values_with_one_line(dsn: str, args: list[str]) -> None:
    done = run_cli(["pgqueue", *args, "--task-paths", "tests.support.jobs"], dsn)
    assert done.returncode in (1, EXIT_USAGE), done.stderr
    _one_error_line(done.stderr)
    assert run_cli(["pgqueue", "list", "--json"], dsn).stdout.strip() == "[]"


@pytest.mark.parametrize(
    "extra",
    [
        ["--queues", "q" * 60],
        ["--queues", "キ" * 18],
        ["--name", ""],
        ["--task-paths", "os"],
    ],
    ids=["60-char-queue", "54-byte-queue", "empty-name", "no-jobs"],
)
def test_worker_refuses_a_queue_or_job_set_it_could_never_serve(dsn: str, extra: list[str]) -> None:
    args = ["pgqueue-worker", "--task-paths", "tests.support.jobs", "--burst", *extra]
    done = run_cli(args, dsn)
    assert done.returncode == EXIT_USAGE, done.stderr
    _one_error_line(done.stderr)

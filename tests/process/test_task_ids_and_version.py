"""Small ones of issue 17: a malformed task id is one clear error everywhere; ``--version``."""

from __future__ import annotations

import asyncio

import pytest

import pgqueue
from pgqueue import ConfigurationError, InvalidTaskId, TaskBackend, TaskNotFound
from tests.support.fixtures import run_cli

BAD = "nope"


def test_a_malformed_id_is_one_usage_error_in_every_call(backend: TaskBackend) -> None:
    calls = {
        "get_task": lambda: backend.get_task(BAD),
        "get_tasks": lambda: backend.get_tasks([BAD]),
        "wait_for_task": lambda: backend.wait_for_task(BAD, timeout=1),
        "revoke": lambda: backend.revoke(BAD),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidTaskId) as caught:
            call()
        assert str(caught.value).startswith("'nope' is not a task id: ids are UUIDs"), name
        # Existing except clauses keep working: a usage error, and "no such task".
        assert isinstance(caught.value, ConfigurationError | ValueError), name
        assert isinstance(caught.value, TaskNotFound), name

    async def main() -> None:
        try:
            for coro in (
                backend.aget_task(BAD),
                backend.aget_tasks([BAD]),
                backend.await_task(BAD),
            ):
                with pytest.raises(InvalidTaskId):
                    await coro
        finally:
            await backend.aclose()

    asyncio.run(main())
    # A well-formed id of no task is still "absent" for the readers.
    assert backend.get_task("00000000-0000-0000-0000-000000000000") is None


def test_the_cli_says_the_same_for_a_malformed_id(dsn: str) -> None:
    for command in ("show", "wait", "revoke", "retry"):
        out = run_cli(["pgqueue", command, BAD], dsn)
        assert out.returncode == 2, (command, out.stderr)
        assert out.stderr.startswith("error: 'nope' is not a task id"), (command, out.stderr)


def test_both_commands_print_their_version() -> None:
    for command in ("pgqueue", "pgqueue-worker"):
        out = run_cli([command, "--version"], None)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"pgqueue {pgqueue.__version__}"
    assert pgqueue.__version__ == "0.1.0"

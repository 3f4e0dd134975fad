"""Typed enqueue (issue 17): ``job.enqueue(backend, ...)`` checked by mypy and at run time,
and ``countdown`` given as a duration string as on the command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pgqueue import ConfigurationError, JobArgumentError, TaskBackend
from tests.support import devx_jobs
from tests.support.fixtures import sql

#: Seconds per test (subprocesses, real workers): not in the quick loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).resolve().parents[1] / "support" / "typing_samples"


@pytest.fixture
def client(dsn: str) -> Iterator[TaskBackend]:
    with TaskBackend(dsn, task_paths=["tests.support.devx_jobs"]) as backend:
        yield backend


def run_mypy(
    *files: Path, cwd: Path, python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    """mypy --strict on ``files``; ``python`` is the interpreter whose packages it searches."""
    return subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--no-incremental",
            "--python-executable", python, *map(str, files),
        ],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.timeout(320)
def test_mypy_catches_a_misspelled_argument_and_passes_correct_code() -> None:
    out = run_mypy(SAMPLES / "good_enqueue.py", SAMPLES / "bad_enqueue.py", cwd=ROOT)
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert not [line for line in errors if "good_enqueue.py" in line], out.stdout
    text = "\n".join(errors)
    assert 'Unexpected keyword argument "widht"' in text and 'did you mean "width"' in text
    assert 'Missing positional argument "width"' in text
    assert 'Argument "width" to "enqueue" of "FunctionJob" has incompatible type "str"' in text
    assert '"TaskId | None"' in text
    assert len(errors) == 4, out.stdout


def test_typed_enqueue_queues_with_the_functions_arguments(client: TaskBackend, dsn: str) -> None:
    first = devx_jobs.resize.enqueue(client, path="cat.png", width=200)
    second = devx_jobs.resize.enqueue(client, "dog.png", 100, height=50)
    later = devx_jobs.resize.options(countdown="5m", priority=7).enqueue(client, "a", 1)
    assert first and second and later
    tasks = {t.id: t for t in client.get_tasks([first, second, later])}
    assert tasks[first].kwargs == {"path": "cat.png", "width": 200}
    assert tasks[second].kwargs == {"path": "dog.png", "width": 100, "height": 50}
    assert tasks[later].priority == 7
    [row] = sql(
        dsn, "SELECT run_at - time_queued AS delay FROM pgqueue.task WHERE id = %s", (later,)
    )
    assert timedelta(minutes=4, seconds=59) <= row["delay"] <= timedelta(minutes=5, seconds=1)
    result = client.queue_many([devx_jobs.resize.call(path=p, width=2) for p in "xy"])
    assert len(result.queued) == 2

    async def main() -> str | None:
        try:
            return await devx_jobs.notify.aenqueue(client, user="ann", text="hi")
        finally:
            await client.aclose()

    notified = asyncio.run(main())
    task = client.get_task(notified or "")
    assert task is not None and task.kwargs == {"user": "ann", "text": "hi"}


def test_typed_enqueue_checks_at_run_time_too(client: TaskBackend, dsn: str) -> None:
    with pytest.raises(JobArgumentError, match="did you mean 'width'"):
        devx_jobs.resize.enqueue(client, path="a", widht=1)  # type: ignore[call-arg]
    with pytest.raises(JobArgumentError, match="takes 3 positional arguments"):
        devx_jobs.resize.enqueue(client, "a", 1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(JobArgumentError, match="multiple values for argument 'path'"):
        devx_jobs.resize.enqueue(client, "a", path="b", width=1)  # type: ignore[misc]
    with pytest.raises(JobArgumentError, match="'user'"):
        devx_jobs.notify.call(text="x")  # type: ignore[call-arg]
    assert int(sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"]) == 0


def test_countdown_takes_the_command_lines_duration_strings(client: TaskBackend, dsn: str) -> None:
    ids = [
        client.queue_task("resize", countdown="90s", path="a", width=1),
        *client.queue_tasks("resize", [{"path": "b", "width": 1}], countdown="2h").queued,
    ]
    rows = sql(
        dsn,
        "SELECT id::text, run_at - time_queued AS delay FROM pgqueue.task ORDER BY delay",
    )
    assert [row["id"] for row in rows] == ids
    assert rows[0]["delay"] == timedelta(seconds=90) and rows[1]["delay"] == timedelta(hours=2)
    with pytest.raises(ConfigurationError, match=r"countdown must be .* such as '90s'.*, not '5x'"):
        client.queue_task("resize", countdown="5x", path="a", width=1)

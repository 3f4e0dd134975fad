"""Enqueue is checked against the job's signature before anything is written (issue 17)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import pgqueue
from pgqueue import Call, ConfigurationError, JobArgumentError, TaskBackend
from tests.support.fixtures import run_cli, sql

JOBS = "tests.support.devx_jobs"


@pytest.fixture
def client(dsn: str) -> Iterator[TaskBackend]:
    with TaskBackend(dsn, task_paths=[JOBS]) as backend:
        yield backend


def _count(dsn: str) -> int:
    return int(sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"])


def test_a_misspelled_argument_is_refused_with_the_closest_name(
    client: TaskBackend, dsn: str
) -> None:
    with pytest.raises(JobArgumentError) as caught:
        client.queue_task("resize", path="cat.png", widht=200)
    message = str(caught.value)
    assert "job 'resize' has no parameter 'widht' (did you mean 'width'?)" in message
    assert "nothing was queued" in message
    # Callers catching the errors pgqueue raised before still catch it.
    assert isinstance(caught.value, ConfigurationError)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)
    assert _count(dsn) == 0


def test_a_missing_argument_is_refused(client: TaskBackend, dsn: str) -> None:
    with pytest.raises(JobArgumentError, match="job 'resize' is missing the required argument"):
        client.queue_task("resize", path="cat.png")
    with pytest.raises(JobArgumentError, match="'user'"):
        client.queue_task("notify", text="hi")
    with pytest.raises(JobArgumentError, match=r"job 'report' is missing .* 'day'"):
        client.queue_task("report")
    assert _count(dsn) == 0


def test_a_dict_passed_positionally_is_refused_and_explained(client: TaskBackend, dsn: str) -> None:
    with pytest.raises(JobArgumentError) as caught:
        client.queue_task("resize", {"path": "cat.png", "width": 200})
    assert "went to meta_params" in str(caught.value)
    assert "queue_task('resize', path=...)" in str(caught.value)
    assert _count(dsn) == 0
    # Real meta params beside full arguments are fine.
    assert client.queue_task("resize", {"user": "ann"}, path="a", width=1) is not None


def test_jobs_taking_kwargs_accept_anything(client: TaskBackend) -> None:
    task_id = client.queue_task("flexible", whatever=1, widht=2)
    task = client.get_task(task_id or "")
    assert task is not None and task.kwargs == {"whatever": 1, "widht": 2}
    assert client.queue_task("resize", path="a", width=1, height=2) is not None


def test_bulk_and_async_paths_check_every_task(client: TaskBackend, dsn: str) -> None:
    with pytest.raises(JobArgumentError, match="'widht'"):
        client.queue_tasks("resize", [{"path": "a", "width": 1}, {"path": "b", "widht": 1}])
    with pytest.raises(JobArgumentError, match="'path'"):
        client.queue_many([Call("flexible", {"x": 1}), Call("resize", {"width": 1})])
    with pytest.raises(JobArgumentError, match="'width'"):
        client.queue_many([("resize", {"path": "a"})])

    async def main() -> None:
        try:
            with pytest.raises(JobArgumentError, match="'widht'"):
                await client.aqueue_task("resize", path="a", widht=1)
            with pytest.raises(JobArgumentError):
                await client.aqueue_tasks("resize", [{"path": "a"}])
            with pytest.raises(JobArgumentError):
                await client.aqueue_many([Call("notify", {"usr": "a"})])
        finally:
            await client.aclose()

    asyncio.run(main())
    assert _count(dsn) == 0
    assert len(client.queue_tasks("resize", [{"path": "a", "width": 1}] * 3).queued) == 3


def test_cli_queue_refuses_a_misspelled_argument(dsn: str) -> None:
    out = run_cli(
        ["pgqueue", "queue", "resize", "path=a.png", "widht=2", "--task-paths", JOBS], dsn
    )
    assert out.returncode == 2, out.stderr
    assert "did you mean 'width'?" in out.stderr
    assert "Traceback" not in out.stderr
    assert _count(dsn) == 0
    out = run_cli(
        ["pgqueue", "queue", "resize", "path=a.png", "width=2", "--task-paths", JOBS], dsn
    )
    assert out.returncode == 0, out.stderr
    assert _count(dsn) == 1


def test_signatures_are_read_once_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bulk enqueue binds per task with a check made once per job, not inspect per task."""
    import inspect

    from pgqueue import _arguments, _enqueue
    from tests.support import devx_jobs

    registry = pgqueue.JobRegistry([pgqueue.job()(devx_jobs.resize.func)])  # nothing cached
    calls = []
    real = inspect.signature

    def counting(obj: object, *args: object, **kwargs: object) -> inspect.Signature:
        calls.append(obj)
        return real(obj, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_arguments.inspect, "signature", counting)
    tasks = [(Call("resize", {}), {"path": str(n), "width": n}) for n in range(500)]
    assert _enqueue.batch_params(registry, "tasks", tasks) is not None
    assert len(calls) == 1

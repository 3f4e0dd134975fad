"""The rest of pulsar 0.9's task API (issue 17): ``JobRegistry.regular()/periodic()``, the
``task_backends`` registry selected by a connection string, and ``nice_task_message(req,
smart_time=None)`` naming the task's user."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

import pgqueue
from pgqueue import ConfigurationError, Task, TaskBackend
from tests.support import devx_jobs


def _tick(consumer: pgqueue.TaskConsumer) -> str:
    return "tick"


def test_registry_regular_and_periodic_yield_name_job_pairs_by_type() -> None:
    tick = pgqueue.periodic_job(run_every=60, name="tick")(_tick)
    registry = pgqueue.JobRegistry([devx_jobs.resize, devx_jobs.flexible, tick])
    regular, periodic = registry.regular(), registry.periodic()
    assert isinstance(regular, Iterator) and isinstance(periodic, Iterator)
    assert list(regular) == [("flexible", devx_jobs.flexible), ("resize", devx_jobs.resize)]
    assert list(periodic) == [("tick", tick)]
    assert list(registry.periodic()) == registry.filter_types("periodic")


class AuditedBackend(TaskBackend):
    """A user's backend class, selected by the scheme audited://."""


@pytest.fixture
def audited() -> Iterator[type[TaskBackend]]:
    pgqueue.register_task_backend("audited", AuditedBackend)
    try:
        yield AuditedBackend
    finally:
        pgqueue.task_backends.pop("audited", None)


def test_a_registered_scheme_selects_its_backend_class(dsn: str, audited: type) -> None:
    assert pgqueue.task_backends["audited"] is AuditedBackend
    params = conninfo_to_dict(dsn)
    rest = f"{params['user']}@/{params['dbname']}?host={quote(str(params['host']), safe='')}"
    with pgqueue.get_task_backend(
        f"audited://{rest}", task_paths=["tests.support.devx_jobs"]
    ) as backend:
        assert type(backend) is AuditedBackend
        assert backend.dsn == f"postgresql://{rest}"
        task_id = backend.queue_task("resize", path="a", width=1)
        assert task_id and backend.get_task(task_id) is not None
    for plain in (f"postgresql://{rest}", f"postgresql+psycopg://{rest}", dsn):
        assert type(pgqueue.get_task_backend(plain)) is TaskBackend
    assert type(pgqueue.get_task_backend("host=localhost dbname=x")) is TaskBackend


def test_unknown_schemes_and_bad_registrations_are_refused(audited: type) -> None:
    with pytest.raises(ConfigurationError, match="no task backend is registered for 'redis://'"):
        pgqueue.get_task_backend("redis://:secret@localhost:6379/0")
    with pytest.raises(ConfigurationError) as caught:
        pgqueue.get_task_backend("redis://:secret@localhost:6379/0")
    assert "secret" not in str(caught.value) and "audited" in str(caught.value)
    with pytest.raises(ConfigurationError, match="URL scheme"):
        pgqueue.register_task_backend("no scheme", AuditedBackend)
    with pytest.raises(ConfigurationError, match=r"subclass of pgqueue\.TaskBackend"):
        pgqueue.register_task_backend("other", dict)  # type: ignore[arg-type]
    assert "other" not in pgqueue.task_backends


def _task(**fields: object) -> Task:
    values: dict[str, object] = {
        "id": "3f2b8c1e-5d4a-4c2b-9e7f-0a1b2c3d4e5f",
        "name": "resize",
        "queue": "tasks",
        "lock_id": None,
        "status": pgqueue.states.SUCCESS,
        "time_queued": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "time_ended": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
        **fields,
    }
    return Task(**values)  # type: ignore[arg-type]


def test_nice_task_message_names_the_user_of_the_meta_params() -> None:
    task = _task(meta_params={"user": "ann"}, worker="host:1")
    assert pgqueue.nice_task_message(task) == (
        "resize (3f2b8c1e) SUCCESS at 2026-01-02T03:04:06.000+00:00 on host:1 by ann"
    )
    assert pgqueue.nice_task_message(_task()) == (
        "resize (3f2b8c1e) SUCCESS at 2026-01-02T03:04:06.000+00:00"
    )
    assert pgqueue.nice_task_message(task, smart_time=lambda t: "just now").endswith(
        "SUCCESS at just now on host:1 by ann"
    )
    # The as_dict form reads the same.
    assert pgqueue.nice_task_message(task.as_dict()) == (
        "resize (3f2b8c1e) SUCCESS at 2026-01-02T03:04:06+00:00 on host:1 by ann"
    )


def test_nice_task_message_takes_pulsars_request_dicts() -> None:
    req = {"name": "add", "id": "abcdef0123456789", "status": 2, "user": "bob", "time_start": 0.0}
    assert pgqueue.nice_task_message(req) == (
        "add (abcdef01) FAILURE at 1970-01-01T00:00:00.000+00:00 by bob"
    )
    seen: list[object] = []
    req = {"name": "add", "id": "abcdef0123456789", "status": 6}
    message = pgqueue.nice_task_message(req, smart_time=lambda t: seen.append(t) or "never")
    assert message == "add (abcdef01) QUEUED at never" and seen == [None]


def test_event_name_is_the_inverse_of_channel() -> None:
    backend = TaskBackend("postgresql://nobody@localhost/none", name="mail")
    for event in ("task_queued", "task_started", "task_done"):
        assert backend.event_name(backend.channel(event)) == event
        assert backend.event_name(backend.channel(event, "slow"), "slow") == event
    with pytest.raises(ConfigurationError, match="not one of queue 'mail'"):
        backend.event_name("tasks_task_done")

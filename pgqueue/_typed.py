"""Typed enqueue: queue a task of a ``@pgqueue.job`` function with its own parameters, checked
by type checkers (a ``ParamSpec`` over the parameters after the consumer) and at run time.

::

    @pgqueue.job()
    def resize(consumer: pgqueue.TaskConsumer, path: str, width: int) -> str: ...

    task_id = resize.enqueue(backend, path="cat.png", width=200)     # TaskId | None
    task_id = await resize.aenqueue(backend, "cat.png", 200)
    resize.options(countdown="5m", priority=3).enqueue(backend, path="cat.png", width=200)
    backend.queue_many([resize.call(path=p, width=200) for p in paths])

Each goes through the same checks and statement as :meth:`TaskBackend.queue_many`; the
pulsar-style ``backend.queue_task("resize", path=..., width=...)`` stays as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NewType, ParamSpec, Protocol

from ._arguments import ArgumentCheck
from ._bulk import Call, QueuedTasks

P = ParamSpec("P")

#: The id of a queued task (a UUID as text), as typed enqueue returns it.
TaskId = NewType("TaskId", str)


class Enqueuer(Protocol):
    """What typed enqueue queues through: a :class:`pgqueue.TaskBackend` (named by its
    methods, so this core module does not import the client)."""

    def queue_many(
        self,
        calls: Iterable[Call | tuple[str, Mapping[str, Any]]],
        *,
        connection: object | None = None,
    ) -> QueuedTasks: ...

    async def aqueue_many(
        self,
        calls: Iterable[Call | tuple[str, Mapping[str, Any]]],
        *,
        connection: object | None = None,
    ) -> QueuedTasks: ...


class CheckedJob(Protocol):
    """What typed enqueue needs of a job: its name and its argument check."""

    @property
    def name(self) -> str: ...

    @property
    def argument_check(self) -> ArgumentCheck: ...


@dataclass(frozen=True)
class EnqueueOptions(Generic[P]):
    """A job with enqueue options fixed (what :meth:`FunctionJob.options` returns).

    The options mean what the arguments of :meth:`TaskBackend.queue_task` of the same names
    mean; None takes the job's default. ``connection`` is the caller's connection (or
    SQLAlchemy session) to enqueue in its transaction: a sync one for :meth:`enqueue`, an
    async one for :meth:`aenqueue`.
    """

    job: CheckedJob
    meta_params: dict[str, Any] | None = None
    expiry: float | timedelta | datetime | None = None
    run_at: datetime | None = None
    countdown: float | timedelta | str | None = None
    queue: str | None = None
    priority: int | None = None
    connection: object | None = None

    def call(self, *args: P.args, **kwargs: P.kwargs) -> Call:
        """One task of this job as a :class:`Call` for ``queue_many``; positional arguments
        are bound to the job's parameters by position. Raises
        :class:`pgqueue._errors.JobArgumentError` when the arguments do not fit the job."""
        bound = self.job.argument_check.bind(args, kwargs)
        self.job.argument_check(bound)
        return Call(
            self.job.name,
            bound,
            self.meta_params,
            self.expiry,
            self.run_at,
            self.countdown,
            self.queue,
            self.priority,
        )

    def enqueue(self, backend: Enqueuer, /, *args: P.args, **kwargs: P.kwargs) -> TaskId | None:
        """Queue one task on ``backend``; its id, or None when the job cannot overlap and a
        live task with the same arguments exists. Raises what ``queue_task`` raises."""
        call = self.call(*args, **kwargs)
        return _first_id(backend.queue_many([call], connection=self.connection))

    async def aenqueue(
        self, backend: Enqueuer, /, *args: P.args, **kwargs: P.kwargs
    ) -> TaskId | None:
        """Awaitable :meth:`enqueue`, on the backend's async pool (or an async
        ``connection``)."""
        call = self.call(*args, **kwargs)
        return _first_id(await backend.aqueue_many([call], connection=self.connection))


def _first_id(result: QueuedTasks) -> TaskId | None:
    task_id = result.ids[0]
    return None if task_id is None else TaskId(task_id)

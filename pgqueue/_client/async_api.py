"""The client's asyncio twins: the same statements on psycopg's async driver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg

from .. import _channels, _connections, _enqueue
from .._bulk import Call, QueuedTasks
from .._errors import (
    TaskNotFound,
)
from .._store import Op
from .._task import Task
from .core import _translated
from .enqueue import _own_kwargs, _queued_id, _same_call, _with_callback
from .reading import WAIT_RECHECK, ReadMixin, _deadline, _valid_ids, _wait_slice
from .workflow import WorkflowMixin, _chain_items

R = TypeVar("R")


class AsyncMixin(ReadMixin, WorkflowMixin):
    """The ``a``-prefixed (asyncio) twins, on the async pool (:mod:`pgqueue._aio`)."""

    # -- asyncio ---------------------------------------------------------------------------

    async def aqueue_task(
        self,
        jobname: str,
        meta_params: dict[str, Any] | None = None,
        expiry: float | timedelta | datetime | None = None,
        *,
        run_at: datetime | None = None,
        countdown: float | timedelta | str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: object | None = None,
        debounce: float | timedelta | None = None,
        depends_on: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Awaitable :meth:`queue_task`: the same statement and rules on the async pool, or
        on the caller's psycopg ``AsyncConnection`` or SQLAlchemy ``AsyncSession`` /
        ``AsyncConnection`` given as ``connection`` (in its transaction, never committed)."""
        call = Call(jobname, kwargs, meta_params, expiry, run_at, countdown, queue, priority)
        one = self._one_task(call, kwargs, debounce, depends_on)
        if isinstance(one, _enqueue.Batch):
            return _queued_id(jobname, (await self._aqueue_batch(one, connection)).ids[0])
        return _queued_id(jobname, await self._afetch(one, connection))

    async def aqueue_tasks(
        self,
        jobname: str,
        kwargs_list: Iterable[Mapping[str, Any]],
        *,
        meta_params: dict[str, Any] | None = None,
        expiry: float | timedelta | datetime | None = None,
        run_at: datetime | None = None,
        countdown: float | timedelta | str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: object | None = None,
        depends_on: Iterable[str] | None = None,
        then: Call | None = None,
    ) -> QueuedTasks:
        """Awaitable :meth:`queue_tasks` (see :meth:`aqueue_task` for ``connection``)."""
        parents = None if depends_on is None else _enqueue.parent_ids(depends_on)
        template = Call(
            jobname, {}, meta_params, expiry, run_at, countdown, queue, priority, parents
        )
        items = _with_callback(_same_call(template, kwargs_list), then, run_anyway=True)
        return await self._aqueue_batch(self._batch_params(items), connection, then is not None)

    async def aqueue_many(
        self,
        calls: Iterable[Call | tuple[str, Mapping[str, Any]]],
        *,
        connection: object | None = None,
    ) -> QueuedTasks:
        """Awaitable :meth:`queue_many` (see :meth:`aqueue_task` for ``connection``)."""
        return await self._aqueue_batch(self._batch_params(_own_kwargs(calls)), connection)

    async def achain(self, *calls: Call, connection: object | None = None) -> list[str]:
        """Awaitable :meth:`chain` (see :meth:`aqueue_task` for ``connection``)."""
        batch = self._batch_params(_chain_items(calls))
        return (await self._aqueue_batch(batch, connection)).queued

    async def agroup(
        self,
        calls: Iterable[Call | tuple[str, Mapping[str, Any]]],
        *,
        then: Call | None = None,
        connection: object | None = None,
    ) -> QueuedTasks:
        """Awaitable :meth:`group` (see :meth:`aqueue_task` for ``connection``)."""
        items = _with_callback(_own_kwargs(calls), then, run_anyway=False)
        return await self._aqueue_batch(self._batch_params(items), connection, then is not None)

    async def _aqueue_batch(
        self, batch: _enqueue.Batch, connection: object | None, callback: bool = False
    ) -> QueuedTasks:
        op = self._batch_op(batch)
        if op is None:
            return QueuedTasks([])
        return self._batch_result(batch, await self._afetch(op, connection), callback)

    async def aget_task(self, task_id: str, *, connection: object | None = None) -> Task | None:
        """Awaitable :meth:`get_task`."""
        tasks = await self.aget_tasks([task_id], connection=connection)
        return tasks[0] if tasks else None

    async def aget_tasks(
        self, ids: Iterable[str], *, connection: object | None = None
    ) -> list[Task]:
        """Awaitable :meth:`get_tasks`."""
        valid = _valid_ids(ids)
        if not valid:
            return []
        return await self._afetch(self.store.get_tasks(ids=valid), connection)

    async def await_task(self, task_id: str, timeout: float | None = None) -> Task:
        """Awaitable :meth:`wait_for_task`: wait without blocking the event loop until the
        task is ready; return it.

        Notifications arrive through the backend's listener thread (the same one
        :meth:`wait_for_task` uses) and wake the waiting coroutine; rows are re-read on the
        async pool, at least every few seconds.

        :raises TaskTimeout: the task was not ready within ``timeout`` seconds.
        :raises TaskNotFound: no task has this id.
        """
        deadline = _deadline(timeout)
        task = await self._arequire_task(task_id)
        if task.done():
            return task
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

        self._add_waiter(task.id, wake)
        try:
            listener = await asyncio.to_thread(self._ensure_listener)
            channels = [self.channel(_channels.TASK_DONE, task.queue)]
            if listener is not None:
                await asyncio.to_thread(listener.listen, channels, WAIT_RECHECK)
            while True:
                task = await self._arequire_task(task.id)
                if task.done():
                    return task
                pause = _wait_slice(task, deadline, timeout, self._recheck)
                with suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), pause)
                event.clear()
        finally:
            self._remove_waiter(task.id, wake)

    async def _arequire_task(self, task_id: str) -> Task:
        task = await self.aget_task(task_id)
        if task is None:
            raise TaskNotFound(f"no task has id {task_id!r}")
        return task

    async def _afetch(self, op: Op[R], connection: object | None) -> R:
        """Run ``op`` on the caller's async ``connection``, else on the async pool."""
        if connection is not None:
            return await _connections.arun(connection, op)
        try:
            async with self._apool.connection() as conn:
                return await _connections.arun(conn, op)
        except psycopg.Error as exc:
            raise _translated(self.dsn, self.schema, exc) from None

    async def aclose(self) -> None:
        """Close the async pool, then what :meth:`close` closes. Call it at the end of the
        event loop that used the ``a``-prefixed methods (e.g. a FastAPI lifespan)."""
        await self._apool.close()
        await asyncio.to_thread(self.close)

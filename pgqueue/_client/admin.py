"""The client's administration: flush, revoke, and flow control of queues."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import psycopg

from .. import states
from .._errors import (
    TaskNotFound,
    UnknownQueue,
)
from .._jobs import JobOptions, check_flow_options
from .._store import Op
from .._values import check_queue, check_text, require_task_id
from ..states import RevokeResult
from .reading import ReadMixin

R = TypeVar("R")


class AdminMixin(ReadMixin):
    """Administration: flushing a queue, revoking a task, pausing and limiting queues."""

    # -- maintenance -----------------------------------------------------------------------

    def flush(self) -> int:
        """Delete every task of this backend's queue that has not started (QUEUED or RETRY),
        as pulsar's ``flush``; return how many were deleted."""
        with self.connection() as conn:
            return self.store.flush_queue(queue=self.name).run(conn)

    def revoke(self, task_id: str, reason: str = "revoked") -> RevokeResult:
        """Cancel a task. A QUEUED or RETRY task becomes REVOKED at once (``error`` =
        ``reason``), releasing its lock_id. A STARTED task is marked (``revoke_requested_at``)
        and its worker is told through NOTIFY (and its next heartbeat): ``consumer.is_revoked()``
        turns True, an ``async`` job is cancelled, and the task ends REVOKED if the job stops
        (for thread jobs this is cooperative); a job that returns normally all the same ends
        SUCCESS with its result.

        :return: a :class:`pgqueue.states.RevokeResult` saying what happened: ``REVOKED``
            (it had not started and never will), ``STOP_REQUESTED`` (it was running and was
            asked to stop) or ``ALREADY_DONE`` (it had finished; falsy, the first two truthy).
        :raises TaskNotFound: no task has this id.
        :raises InvalidTaskId: ``task_id`` is not a UUID.
        :raises ConfigurationError: ``reason`` is not a str, or holds a NUL character.
        """
        valid = require_task_id(task_id)
        check_text(reason, "reason")
        with self.connection() as conn:
            row = self.store.revoke_task(id=valid, reason=reason).run(conn)
        if row is not None:
            if row["status"] == states.STARTED:
                return RevokeResult.STOP_REQUESTED
            return RevokeResult.REVOKED
        if self.get_task(task_id) is None:
            raise TaskNotFound(f"no task has id {task_id!r}")
        return RevokeResult.ALREADY_DONE

    # -- flow control ----------------------------------------------------------------------

    def pause_queue(self, name: str) -> datetime:
        """Pause queue ``name`` for every worker: from their next claim none takes a task from
        it (the claim itself skips paused queues, so it holds fleet-wide and across restarts);
        running tasks finish, queued ones wait. Pausing a paused queue changes nothing. The
        SQL equivalent is ``SELECT pgqueue.pause_queue('name')`` (revision pgqueue_0006_flow).

        :return: since when the queue is paused (database clock).
        :raises UnknownQueue: no task and no worker ever used ``name`` (nothing changed).
        :raises ConfigurationError: ``name`` is not a valid queue name.
        """
        return self._flow_call(self.store.pause_queue(queue=check_queue(name)), name)

    def resume_queue(self, name: str) -> bool:
        """Resume queue ``name``: its workers are woken by a notification and claim at once.

        :return: whether the queue was paused.
        :raises UnknownQueue: no task and no worker ever used ``name`` (nothing changed).
        :raises ConfigurationError: ``name`` is not a valid queue name.
        """
        return self._flow_call(self.store.resume_queue(queue=check_queue(name)), name)

    def set_queue_limit(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate: tuple[int, float] | None = None,
    ) -> None:
        """Set the limits of ``queue``, across all workers and enforced by every claim (as a
        job's ``concurrency`` and ``rate_limit`` are): at most ``concurrency`` tasks STARTED
        at once, at most ``rate[0]`` starts in any window of ``rate[1]`` seconds (database
        clock). None means no such limit: each call sets both. Stored in ``queue_setting``,
        changeable at run time (SQL: ``SELECT pgqueue.set_queue_limit('queue', 4, 10, 1.0)``);
        workers are woken to apply it.

        :raises ConfigurationError: ``concurrency`` is not None nor an int >= 1, ``rate`` not
            None nor (int >= 1, seconds > 0), or ``queue`` not a valid name (nothing changed).
        :raises UnknownQueue: no task and no worker ever used ``queue`` (nothing changed).
        """
        check_flow_options(JobOptions(concurrency=concurrency, rate_limit=rate), f"queue {queue!r}")
        op = self.store.set_queue_limit(
            queue=check_queue(queue),
            concurrency=concurrency,
            rate_count=rate[0] if rate else None,
            rate_seconds=float(rate[1]) if rate else None,
        )
        self._flow_call(op, queue)

    def _flow_call(self, op: Op[R], name: str) -> R:
        with self.connection() as conn:
            try:
                return op.run(conn)
            except psycopg.errors.NoDataFound:
                raise UnknownQueue(
                    f"unknown queue {name!r}: no task and no worker ever used it; check the "
                    "name (pgqueue status lists the queues). Nothing was changed."
                ) from None

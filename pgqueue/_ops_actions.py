"""What operators change, shared by the command line and the dashboard: revoke, retry and
run tasks now, bulk actions, and pausing, resuming and triggering queues and schedules; each
action is written in one transaction with its line of the audit trail (``operator_action``).
:class:`pgqueue._ops.Operations` adds the reads these actions show.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from ._backend import TaskBackend
from ._errors import ConfigurationError, PgQueueError, UnknownQueue, UnknownSchedule
from ._store import Op, Store
from ._store.schedules import triggered_params
from ._values import check_queue, check_text, require_task_id

Row = dict[str, Any]

R = TypeVar("R")

#: What ``revoke`` records as the error of a task an operator revoked.
REVOKED_BY_OPERATOR = "revoked by an operator"

#: The most tasks one bulk action changes.
BULK_LIMIT = 10_000


class ActionRefused(PgQueueError):
    """An operator action (revoke, retry) does not apply to the task in its current state;
    nothing was changed. The message says why and what the task's state is."""


def default_actor() -> str:
    """Who an action is recorded as when no one is named: ``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container, say)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


class OperatorActions:
    """The actions of :class:`pgqueue._ops.Operations` (which sets ``backend`` and ``store``
    and provides the reads an action shows: :meth:`resolve_id`, :meth:`task`)."""

    backend: TaskBackend
    store: Store

    if TYPE_CHECKING:  # provided by Operations

        def resolve_id(self, task_id: str) -> str: ...

        def task(self, task_id: str, preview: int | None = ..., *, fresh: bool = False) -> Row: ...

        def _run(self, op: Op[R]) -> R: ...

    def revoke(self, task_id: str, *, actor: str | None = None) -> Row:
        """Revoke a task (:meth:`TaskBackend.revoke`): a QUEUED or RETRY task becomes REVOKED
        and never runs; a STARTED one is asked to stop (``revoke_requested_at``) and ends
        REVOKED if its job stops (SUCCESS if it returns normally all the same). Returns the
        task after the change, with ``revoke``: the :class:`pgqueue.states.RevokeResult`'s
        value (``revoked`` or ``stop_requested``), which says what the call did even when the
        task has moved on since. ``task_id`` may be a unique prefix (:meth:`resolve_id`); the
        audit trail names ``actor`` (default: this process's user and host).

        :raises ActionRefused: the task has already finished.
        """
        task_id = self.resolve_id(task_id)
        result = self.backend.revoke(task_id, REVOKED_BY_OPERATOR)
        if not result:
            task = self.task(task_id, fresh=True)
            raise ActionRefused(f"task {task_id} has already finished ({task['state']})")
        self._run(self._audit(actor, "revoke", task_id))
        return {**self.task(task_id, fresh=True), "revoke": result.value}

    def retry(self, task_id: str, *, actor: str | None = None) -> Row:
        """Queue a FAILURE or REVOKED task again: it becomes QUEUED, due now. Returns it. Its
        last attempt's error and traceback are kept in its attempt history
        (:meth:`attempts`). ``task_id`` and ``actor`` as :meth:`revoke`.

        :raises ActionRefused: the task is not FAILURE/REVOKED, or it cannot overlap and
            another live task with the same job and arguments holds its lock_id.
        """
        task_id = self.resolve_id(task_id)
        return self._requeue(task_id, self.store.retry_task(id=task_id), "retry", actor, {})

    def grant_attempts(self, task_id: str, more: int, *, actor: str | None = None) -> Row:
        """Queue a FAILURE or REVOKED task again with ``more`` attempts (1..100): a failure
        of the next ``more - 1`` runs is retried with the job's backoff, as ``max_retries``
        would (``max_retries`` is raised to ``attempts + more - 1``). Raises as :meth:`retry`,
        and :class:`ConfigurationError` for ``more`` out of range."""
        if not 1 <= more <= 100:
            raise ConfigurationError(f"attempts to grant must be between 1 and 100, not {more}")
        task_id = self.resolve_id(task_id)
        op = self.store.grant_attempts(id=task_id, more=more)
        return self._requeue(task_id, op, "grant attempts", actor, {"more": more})

    def run_now(self, task_id: str, *, actor: str | None = None) -> Row:
        """Make a QUEUED or RETRY task that waits for a later ``run_at`` due now.

        :raises ActionRefused: the task is not waiting (running, finished or already due).
        """
        task_id = self.resolve_id(task_id)
        with self.backend.connection() as conn, conn.transaction():
            done = self.store.run_now(id=task_id).run(conn)
            if done:
                self._audit(actor, "run now", task_id).run(conn)
        task = self.task(task_id)
        if not done:
            raise ActionRefused(f"task {task_id} is {task['state']} and not waiting to be due")
        return task

    def retry_failed(
        self,
        *,
        jobs: Sequence[str] = (),
        queues: Sequence[str] = (),
        limit: int = BULK_LIMIT,
        actor: str | None = None,
    ) -> list[str]:
        """Queue again every FAILURE task of ``jobs`` in ``queues`` (empty: any), at most
        ``limit`` (1..10000) in one go; returns their ids. A task whose job cannot overlap is
        left FAILURE while a live task holds its lock_id (and only one of several failed
        tasks sharing one is queued). Recorded in the audit trail as one action.

        :raises ConfigurationError: a limit out of range, or a job or queue holding NUL.
        """
        if not 1 <= limit <= BULK_LIMIT:
            raise ConfigurationError(f"limit must be between 1 and {BULK_LIMIT}, not {limit}")
        for value in (*jobs, *queues):
            check_text(value, "a job or queue filter")
        with self.backend.connection() as conn, conn.transaction():
            ids = self.store.retry_failed(
                jobs=list(jobs) or None, queues=list(queues) or None, limit=limit
            ).run(conn)
            detail = {"count": len(ids), "jobs": list(jobs), "queues": list(queues)}
            self._audit(actor, "retry failed tasks", None, **detail).run(conn)
        return ids

    def revoke_many(self, task_ids: Sequence[str], *, actor: str | None = None) -> list[str]:
        """Revoke each task of ``task_ids`` (whole ids, at most 10000) as :meth:`revoke` does,
        in one transaction; returns the ids that were QUEUED, RETRY or STARTED (finished ones
        are left as they are). Recorded in the audit trail as one action.

        :raises InvalidTaskId: an id that is not a UUID; :raises ConfigurationError: too many.
        """
        if len(task_ids) > BULK_LIMIT:
            raise ConfigurationError(f"at most {BULK_LIMIT} tasks at a time, not {len(task_ids)}")
        valid = [require_task_id(task_id) for task_id in task_ids]
        revoked = []
        with self.backend.connection() as conn, conn.transaction():
            for task_id in valid:
                row = self.store.revoke_task(id=task_id, reason=REVOKED_BY_OPERATOR).run(conn)
                if row is not None:
                    revoked.append(task_id)
            self._audit(actor, "revoke tasks", None, count=len(revoked), ids=revoked).run(conn)
        return revoked

    def pause_schedule(self, name: str, *, actor: str | None = None) -> Row:
        """Pause the schedule of periodic job ``name`` on every scheduler: its ticks queue
        nothing (they are skipped and counted in ``skipped_count``, not caught up on resume)
        until :meth:`resume_schedule`. Returns ``name`` and ``paused_at`` (the first pause's
        time when it was paused already). Audited as ``pause schedule``.

        :raises UnknownSchedule: no schedule has that name; nothing changed.
        """
        return self._schedule_action(
            name,
            actor,
            "pause schedule",
            lambda: self.store.set_schedule_paused(name=name, paused=True),
        )

    def resume_schedule(self, name: str, *, actor: str | None = None) -> Row:
        """Resume a paused schedule: its next tick queues a task again (``paused_at`` None
        in the returned row). Audited as ``resume schedule``; raises as
        :meth:`pause_schedule`."""
        return self._schedule_action(
            name,
            actor,
            "resume schedule",
            lambda: self.store.set_schedule_paused(name=name, paused=False),
        )

    def trigger_schedule(self, name: str, *, actor: str | None = None) -> Row:
        """Run periodic job ``name`` once now, paused or not: queue one task of the job as a
        tick would, at once and without a scheduler, so any worker consuming its queue runs
        it. The task takes the job's options a scheduler stored with the schedule
        (``task_options``: queue, priority, expiry, retries, limits, and the lock of a job
        that cannot overlap: nothing is queued while its previous task is live), and
        ``meta_params`` naming the operator (``triggered_by``, ``triggered_at``, ``tick``).
        The task, the schedule's counters (``runs_count``, ``last_task``, ``last_outcome``
        ``triggered`` or ``trigger skipped (overlap)``) and the audit line (``trigger
        schedule``) are written in one transaction.

        A schedule stored by a scheduler older than revision ``pgqueue_0013_queue_stats``
        has no ``task_options`` until a scheduler of this version starts: then the run is
        requested instead, and the next scheduler round queues it (``trigger_requested_at``).

        Returns ``name``, ``paused_at``, ``task_id`` (None when nothing was queued),
        ``queue``, ``queued`` (True when a task was queued) and ``trigger_requested_at``
        (None unless the run was only requested).

        :raises UnknownSchedule: no schedule has that name; nothing changed.
        """
        who = actor or default_actor()
        check_text(name, "a schedule name")
        with self.backend.connection() as conn, conn.transaction():
            row = self.store.lock_schedule(name=name).run(conn)
            options = None if row is None else row["task_options"]
            if row is None:
                pass  # raised below, once this connection is back in the pool
            elif options is None:
                requested = self.store.request_trigger(name=name, actor=who).run(conn)
                self._audit(who, "trigger schedule", None, schedule=name, queued=False).run(conn)
                return {**(requested or {}), "task_id": None, "queue": None, "queued": False}
            else:
                moment = row["now"].isoformat()
                meta = {"tick": moment, "triggered_by": who, "triggered_at": moment}
                task_id = self.store.queue_task(triggered_params(options, meta)).run(conn)
                self.store.record_ticks(
                    name=name,
                    queued=0 if task_id is None else 1,
                    skipped=0,
                    last_task=task_id,
                    outcome="triggered" if task_id else "trigger skipped (overlap)",
                ).run(conn)
                detail = {"schedule": name, "queued": task_id is not None}
                self._audit(who, "trigger schedule", task_id, **detail).run(conn)
        if row is None or options is None:
            raise self._unknown_schedule(name)
        return {
            "name": name,
            "paused_at": row["paused_at"],
            "task_id": task_id,
            "queue": options.get("queue"),
            "queued": task_id is not None,
            "trigger_requested_at": None,
        }

    def pause_queue(self, name: str, *, actor: str | None = None) -> Row:
        """Pause queue ``name`` for every worker, as :meth:`TaskBackend.pause_queue` does
        (running tasks finish, queued ones wait), and record it in the audit trail as ``pause
        queue``, in one transaction. Returns ``queue`` and ``paused_at`` (the first pause's
        time when it was paused already).

        :raises UnknownQueue: no task and no worker ever used ``name``; nothing changed.
        :raises ConfigurationError: ``name`` is not a valid queue name.
        """
        queue = check_queue(name)
        since = self._queue_action(queue, actor, "pause queue", self.store.pause_queue(queue=queue))
        return {"queue": queue, "paused_at": since}

    def resume_queue(self, name: str, *, actor: str | None = None) -> Row:
        """Resume queue ``name`` (its workers are woken and claim at once), recorded as
        ``resume queue``. Returns ``queue`` and ``was_paused``; raises as
        :meth:`pause_queue`."""
        queue = check_queue(name)
        was = self._queue_action(queue, actor, "resume queue", self.store.resume_queue(queue=queue))
        return {"queue": queue, "was_paused": was}

    def _queue_action(self, queue: str, actor: str | None, action: str, op: Op[R]) -> R:
        """Run ``op`` on ``queue`` and record it, in one transaction."""
        with self.backend.connection() as conn, conn.transaction():
            try:
                result = op.run(conn)
            except psycopg.errors.NoDataFound:
                raise UnknownQueue(
                    f"unknown queue {queue!r}: no task and no worker ever used it; nothing "
                    "was changed"
                ) from None
            self._audit(actor, action, None, queue=queue).run(conn)
        return result

    def _schedule_action(
        self, name: str, actor: str | None, action: str, op: Callable[[], Op[Row | None]]
    ) -> Row:
        """Run ``op`` on schedule ``name`` and record it, in one transaction."""
        check_text(name, "a schedule name")
        with self.backend.connection() as conn, conn.transaction():
            row = op().run(conn)
            if row is not None:
                self._audit(actor, action, None, schedule=name).run(conn)
        if row is None:
            raise self._unknown_schedule(name)
        return row

    def _unknown_schedule(self, name: str) -> UnknownSchedule:
        """The error for a schedule name that has no row, naming those that have one."""
        known = [s["name"] for s in self.backend.schedules()]
        return UnknownSchedule(
            f"no periodic job named {name!r} has a schedule (known: "
            f"{', '.join(known) or 'none yet; a worker with --schedule-periodic defines them'})"
        )

    def _requeue(
        self, task_id: str, op: Op[bool], action: str, actor: str | None, detail: dict[str, Any]
    ) -> Row:
        """Run ``op`` (a retry of ``task_id``) and record it, in one transaction."""
        try:
            with self.backend.connection() as conn, conn.transaction():
                done = op.run(conn)
                if done:
                    self._audit(actor, action, task_id, **detail).run(conn)
        except psycopg.errors.UniqueViolation:
            holder = self._run(self.store.lock_holder(id=task_id))
            who = f"task {holder['id']} ({holder['state']})" if holder else "another task"
            raise ActionRefused(
                f"task {task_id} cannot run again: its job cannot overlap and {who} with the "
                "same job and arguments is live; wait for it to finish or revoke it"
            ) from None
        task = self.task(task_id, fresh=True)
        if not done:
            raise ActionRefused(
                f"task {task_id} is {task['state']}: only FAILURE and REVOKED tasks can be retried"
            )
        return task

    def _audit(
        self, actor: str | None, action: str, task_id: str | None, **detail: Any
    ) -> Op[None]:
        return self.store.record_action(
            actor=actor or default_actor(),
            action=action,
            task_id=task_id,
            detail=json.dumps(detail),
        )

"""The client's reads: tasks by id, and waiting for a task to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from .. import _channels
from .._errors import (
    ConfigurationError,
    TaskNotFound,
    TaskTimeout,
)
from .._listener import Listener, listen_target
from .._task import Task
from .._values import require_task_id
from .core import ClientCore

#: Seconds between re-reads of a task while waiting for it, whatever the notifications say.
WAIT_RECHECK = 5.0
#: Seconds between re-reads of a waited-for task when no listener can run (poll-only).
POLL_RECHECK = 0.5


class ReadMixin(ClientCore):
    """Reading tasks and waiting for them (the listener and its waiters)."""

    # -- reading ---------------------------------------------------------------------------

    def get_task(self, task_id: str, *, connection: object | None = None) -> Task | None:
        """The task with this id, or None when no task has it. ``connection`` as for
        :meth:`get_tasks`. Raises :class:`InvalidTaskId` for an id that is not a UUID."""
        tasks = self.get_tasks([task_id], connection=connection)
        return tasks[0] if tasks else None

    def get_tasks(self, ids: Iterable[str], *, connection: object | None = None) -> list[Task]:
        """The tasks with these ids that exist, in no particular order. Raises
        :class:`InvalidTaskId` (nothing is read) when one of the ids is not a UUID.

        :param connection: read through the caller's connection (which sees its own
            uncommitted tasks) instead of the backend's pool.
        """
        valid = _valid_ids(ids)
        if not valid:
            return []
        return self._fetch(self.store.get_tasks(ids=valid), connection)

    def wait_for_task(self, task_id: str, timeout: float | None = None) -> Task:
        """Block until the task is in a ready state (SUCCESS, FAILURE, REVOKED); return it.

        Listens on ``<queue>_task_done`` and re-reads the row after every notification, after
        every reconnect of the listener and at least every few seconds, so a lost notification
        can never keep it waiting once the task has ended.

        :param timeout: seconds; None waits for ever; 0 or less only reads the task once.
        :raises TaskTimeout: the task was not ready within ``timeout``.
        :raises ConfigurationError: ``timeout`` is not a number (or is NaN).
        :raises TaskNotFound: no task has this id, or it was deleted (flushed, pruned) while
            waiting (noticed at the next re-read, within a few seconds); its subclass
            :class:`InvalidTaskId` when ``task_id`` is not a UUID.
        :raises ConnectionFailed: a re-read found no connection to the database within 10 s
            (an outage longer than that; a restart or a terminated backend is ridden out).
        """
        deadline = _deadline(timeout)
        task = self._require_task(task_id)
        if task.done():
            return task
        event = threading.Event()
        self._add_waiter(task.id, event.set)
        try:
            listener = self._ensure_listener()
            if listener is not None:
                listener.listen([self.channel(_channels.TASK_DONE, task.queue)], timeout)
            while True:
                task = self._require_task(task.id)
                if task.done():
                    return task
                event.wait(_wait_slice(task, deadline, timeout, self._recheck))
                event.clear()
        finally:
            self._remove_waiter(task.id, event.set)

    def _require_task(self, task_id: str) -> Task:
        task = self.get_task(task_id)
        if task is None:
            raise TaskNotFound(f"no task has id {task_id!r}")
        return task

    @property
    def _recheck(self) -> float:
        """Seconds between re-reads of a waited-for task."""
        return POLL_RECHECK if self._poll_only else WAIT_RECHECK

    def _ensure_listener(self) -> Listener | None:
        """The backend's listener, started on first use; None when it runs poll-only."""
        with self._pool_lock:
            if self._listener is None and not self._poll_only:
                target = listen_target(self.dsn, self.listen_dsn, "client")
                if target is None:
                    self._poll_only = True
                    return None
                self._listener = Listener(
                    target,
                    [],
                    on_notify=self._on_notify,
                    on_reconnect=self._wake_all_waiters,
                    application_name="pgqueue-client-listener",
                )
                self._listener.start()
            return self._listener

    def _add_waiter(self, task_id: str, wake: Callable[[], None]) -> None:
        with self._waiters_lock:
            self._waiters.setdefault(task_id, []).append(wake)

    def _remove_waiter(self, task_id: str, wake: Callable[[], None]) -> None:
        with self._waiters_lock:
            wakers = self._waiters.get(task_id, [])
            if wake in wakers:
                wakers.remove(wake)
            if not wakers:
                self._waiters.pop(task_id, None)

    def _on_notify(self, channel: str, payload: str) -> None:
        with self._waiters_lock:
            wakers = list(self._waiters.get(payload, ()))
        for wake in wakers:
            wake()

    def _wake_all_waiters(self) -> None:
        with self._waiters_lock:
            wakers = [wake for group in self._waiters.values() for wake in group]
        for wake in wakers:
            wake()


def _valid_ids(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, str | bytes):
        raise ConfigurationError(
            f"ids must be an iterable of task ids, not one {type(ids).__name__}: "
            "pass [task_id], or call get_task"
        )
    return [require_task_id(i) for i in ids]


def _deadline(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` value at which a wait of ``timeout`` seconds ends (None: no
    end); raises :class:`ConfigurationError` for a timeout that is not a number or is NaN."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout != timeout:
        raise ConfigurationError(f"timeout must be seconds or None, not {timeout!r}")
    return time.monotonic() + timeout


def _wait_slice(task: Task, deadline: float | None, timeout: float | None, recheck: float) -> float:
    """Seconds (at most ``recheck``) a waiter may sleep before re-reading ``task``; raises
    :class:`TaskTimeout` once ``deadline`` (a ``time.monotonic()`` value) has passed."""
    if deadline is None:
        return recheck
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TaskTimeout(
            f"task {task.id} ({task.name}) is still {task.status_string()} after {timeout}s"
        )
    return min(remaining, recheck)

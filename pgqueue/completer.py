"""The completer: a worker's thread that writes how its tasks ended, in batches.

Outcomes queued while the previous write ran go out together in one ``FINISH_TASKS``
statement (up to :data:`FINISH_BATCH`) on the completer's own connection. Every write is
fenced on ``(id, attempts, STARTED, worker)``, so a write repeated after a lost connection, or
arriving after the task was rescued and claimed again, changes nothing. Only once a write has
committed does the owner hear of it (``on_written``): a task never counts as done before its
outcome is in the table.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from . import states
from ._store import Store
from .errors import first_line
from .task import Task

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]

#: Most outcomes written by one finish statement.
FINISH_BATCH = 500

#: Called with a written batch and ``{task id: time_ended}`` of the rows the write changed (an
#: outcome missing from it was fenced off: the task was revoked or rescued meanwhile).
WrittenHandler = Callable[[list["Outcome"], Mapping[str, datetime | None]], None]


@dataclass(frozen=True)
class Outcome:
    """How one execution ended, waiting to be written: the task as claimed, the new status
    (:mod:`pgqueue.states`), the result as JSON text, the error and traceback, and for RETRY
    the ``delay`` in seconds before the next attempt."""

    task: Task
    status: int
    result: str | None = None
    error: str | None = None
    traceback: str | None = None
    delay: float | None = None


class Completer:
    """Writes outcomes put with :meth:`put` on a background thread (see the module docstring).

    :param pool: a pool holding the completer's one connection.
    :param store: the store of the worker's schema.
    :param worker_id: the identity the tasks were claimed under (part of the fence).
    :param on_written: told of every committed write, on the completer's thread.
    :param abort: once set, a write failing on a lost connection is given up instead of
        retried (the lease then covers those tasks).
    """

    def __init__(
        self,
        pool: ConnectionPool[Connection],
        store: Store,
        worker_id: str,
        on_written: WrittenHandler,
        abort: threading.Event,
    ) -> None:
        self._pool = pool
        self.store = store
        self.worker_id = worker_id
        self._on_written = on_written
        self._abort = abort
        self._outcomes: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pgqueue-completer", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def put(self, outcome: Outcome) -> None:
        """Queue an outcome for the next write; never blocks."""
        self._outcomes.put(outcome)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the thread (waiting at most ``timeout`` seconds)."""
        self._outcomes.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def write_late(self) -> None:
        """After :meth:`stop`: write, on the caller's thread, the outcomes queued since (jobs
        that returned during shutdown), unless the thread is still stuck in a write."""
        late: list[Outcome] = []
        while True:
            try:
                item = self._outcomes.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                late.append(item)
        if late and not self._thread.is_alive():
            self.write(late)

    def _run(self) -> None:
        while True:
            first = self._outcomes.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < FINISH_BATCH:
                try:
                    item = self._outcomes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._outcomes.put(None)
                    break
                batch.append(item)
            self._record(batch)

    def _record(self, batch: list[Outcome]) -> None:
        """Write outcomes; one the database refuses (say a NUL character in a result) is
        recorded as FAILURE saying so, so that neither the batch nor this thread is lost."""
        try:
            self.write(batch)
        except psycopg.Error as exc:
            if len(batch) > 1:
                for outcome in batch:
                    self._record([outcome])
                return
            refused = batch[0]
            error = f"the outcome {states.status_string(refused.status)} could not be recorded: "
            logger.error("%s: %s%s", refused.task.info(), error, first_line(exc))
            error += first_line(exc).replace("\x00", "\\0")
            self.write([Outcome(refused.task, states.FAILURE, error=error)])

    def write(self, batch: list[Outcome]) -> None:
        """Write ``batch`` in one statement, retrying on a lost connection until it commits
        (or :attr:`abort` is set); then call ``on_written``. Raises ``psycopg.Error`` when
        the database refuses the statement itself."""
        op = self.store.finish_tasks(
            ids=[o.task.id for o in batch],
            attempts=[o.task.attempts for o in batch],
            statuses=[o.status for o in batch],
            results=[o.result for o in batch],
            errors=[o.error for o in batch],
            tracebacks=[o.traceback for o in batch],
            delays=[o.delay for o in batch],
            worker=self.worker_id,
        )
        backoff = 0.2
        while True:
            try:
                with self._pool.connection() as conn:
                    rows = op.run(conn)
                break
            except psycopg.OperationalError as exc:
                # The statement is fenced on (attempt, STARTED), so running it again after an
                # unknown outcome is harmless: it updates nothing the second time.
                if self._abort.is_set():
                    logger.error(
                        "giving up recording %d finished tasks (%s): stopping; they will be "
                        "rescued after the lease",
                        len(batch),
                        first_line(exc),
                    )
                    return
                logger.warning(
                    "could not record %d finished tasks (%s); retrying in %.1fs",
                    len(batch),
                    first_line(exc),
                    backoff,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self._on_written(batch, {row["id"]: row["time_ended"] for row in rows})

"""The completer: a worker's service that writes how its tasks ended, in batches.

Outcomes queued while the previous write ran go out together in one ``FINISH_TASKS``
statement (up to :data:`FINISH_BATCH`) on the completer's own connection. Every write is
fenced on ``(id, attempts, STARTED, worker)``, so a write repeated after a lost connection, or
arriving after the task was rescued and claimed again, changes nothing. Only once a write has
committed does the owner hear of it (``on_written``): a task never counts as done before its
outcome is in the table. At shutdown the same connection writes the outcomes that arrived
late (:meth:`Completer.write_late`) and hands the unfinished tasks back
(:meth:`Completer.give_back`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from .. import states
from .._errors import first_line
from .._service import Service
from .._store import Store
from .._task import Task, nice_task_message, task_log_fields
from .outcome import Outcome

logger = logging.getLogger("pgqueue.worker")
#: The level of an outcome's line: a success is logged at DEBUG only (INFO has the summary of
#: :mod:`pgqueue.worker.activity`), a revoke at INFO, a retry and a failure above.
_OUTCOME_LOG_LEVELS = {
    states.SUCCESS: logging.DEBUG,
    states.REVOKED: logging.INFO,
    states.RETRY: logging.WARNING,
    states.FAILURE: logging.ERROR,
}

Connection = psycopg.Connection[dict[str, Any]]

#: Most outcomes written by one finish statement.
FINISH_BATCH = 500

#: SQLSTATE classes by which the database refuses the data of an outcome: data exception
#: (22: a NUL character, a number out of range), integrity constraint (23), program limit
#: (54: a value too large). Any other error (a lost connection, a deadlock, a prepared
#: statement a pooler dropped, a missing privilege) says nothing about the outcome.
REFUSED_CLASSES = ("22", "23", "54")


def refuses_outcome(exc: psycopg.Error) -> bool:
    """True when ``exc`` is the database refusing the values of an outcome (one of
    :data:`REFUSED_CLASSES`), or psycopg refusing to send them (a ``DataError`` raised
    before the statement left, such as a NUL character in a text value, has no SQLSTATE),
    so that writing another outcome instead may succeed."""
    if isinstance(exc, psycopg.DataError) and exc.sqlstate is None:
        return True
    return (exc.sqlstate or "")[:2] in REFUSED_CLASSES


#: Called with a written batch and ``{task id: time_ended}`` of the rows the write changed (an
#: outcome missing from it was fenced off: the task was revoked or rescued meanwhile).
WrittenHandler = Callable[[list[Outcome], Mapping[str, datetime | None]], None]


class Completer(Service):
    """Writes outcomes put with :meth:`put` on a background thread (see the module docstring).

    :param pool: a pool holding the completer's one connection (its owner closes it).
    :param store: the store of the worker's schema.
    :param worker_id: the identity the tasks were claimed under (part of the fence).
    :param on_written: told of every committed write, on the writing thread, once its
        outcomes were logged.

    :meth:`stop` writes what is queued before the loop ends; after :meth:`give_up` a write
    failing on a lost connection is given up instead of retried (the lease then covers
    those tasks).
    """

    def __init__(
        self,
        pool: ConnectionPool[Connection],
        store: Store,
        worker_id: str,
        on_written: WrittenHandler,
    ) -> None:
        super().__init__("pgqueue-completer")
        self._pool = pool
        self.store = store
        self.worker_id = worker_id
        self._on_written = on_written
        self._abort = threading.Event()
        self._outcomes: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()

    def put(self, outcome: Outcome) -> None:
        """Queue an outcome for the next write; never blocks."""
        self._outcomes.put(outcome)

    def _interrupt(self) -> None:
        """End the loop once the outcomes queued before this call are written."""
        self._outcomes.put(None)

    def give_up(self) -> None:
        """From now on a write failing on a lost connection is given up, not retried."""
        self._abort.set()

    def write_late(self) -> None:
        """After :meth:`stop`: write, on the caller's thread, the outcomes queued since (jobs
        that returned during shutdown), unless the loop is still stuck in a write."""
        late: list[Outcome] = []
        while True:
            try:
                item = self._outcomes.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                late.append(item)
        if late and self.wait(0):
            self.write(late)

    def run_once(self) -> float | None:
        """Wait for an outcome, take those queued behind it (up to :data:`FINISH_BATCH`) and
        write them; None once the end that :meth:`stop` queued is reached."""
        first = self._outcomes.get()
        if first is None:
            return None
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
        return 0.0

    def _record(self, batch: list[Outcome]) -> None:
        """Write outcomes; one the database refuses (say a NUL character in a result:
        :func:`refuses_outcome`) is recorded as FAILURE saying so, so that neither the batch
        nor this thread is lost."""
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
        """Write ``batch`` in one statement, retrying on any error but a refused outcome
        (a lost connection, a deadlock, a statement error) until it commits (or
        :meth:`give_up` was called); then log it and call ``on_written``. Raises
        ``psycopg.Error`` when the database refuses the values (:func:`refuses_outcome`)."""
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
            except psycopg.Error as exc:
                # The statement is fenced on (attempt, STARTED), so running it again after an
                # unknown outcome is harmless: it updates nothing the second time.
                if refuses_outcome(exc):
                    raise
                if self._abort.is_set():
                    logger.error(
                        "giving up recording %d finished tasks (%s): stopping; they will be "
                        "rescued after the lease",
                        len(batch),
                        first_line(exc),
                    )
                    return
                logger.warning(
                    "could not record %d finished tasks (%s: %s); retrying in %.1fs",
                    len(batch),
                    exc.sqlstate or "connection",
                    first_line(exc),
                    backoff,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        written = {row["id"]: row["time_ended"] for row in rows}
        _log_written(batch, written)
        self._on_written(batch, written)

    def give_back(self, tasks: Sequence[Task], lease: float) -> int:
        """Hand unfinished tasks back to the queue without using up their attempt (QUEUED,
        or RETRY after an earlier failed attempt); return how many were. When the database
        is gone this is logged and 0 returned: the lease (``lease`` seconds) covers them."""
        op = self.store.give_back_tasks(
            ids=[t.id for t in tasks], attempts=[t.attempts for t in tasks], worker=self.worker_id
        )
        try:
            with self._pool.connection(timeout=5) as conn:
                rows = op.run(conn)
        except Exception as exc:  # the database may be gone: the lease covers these tasks
            logger.warning(
                "could not give back %d unfinished tasks (%s); they will be rescued %.1fs "
                "after the last heartbeat",
                len(tasks),
                first_line(exc),
                lease,
            )
            return 0
        for row in rows:
            logger.warning(
                "gave back unfinished task.%s(%s) at shutdown: now %s, attempt not counted",
                row["name"],
                row["id"],
                states.status_string(row["status"]),
            )
        return len(rows)


def _log_written(batch: list[Outcome], written: Mapping[str, datetime | None]) -> None:
    """Log each outcome of a committed write, or warn that it was fenced off."""
    for outcome in batch:
        if outcome.task.id in written:
            level = _OUTCOME_LOG_LEVELS.get(outcome.status, logging.INFO)
            if logger.isEnabledFor(level):
                ended = replace(
                    outcome.task, status=outcome.status, time_ended=written[outcome.task.id]
                )
                error = f": {outcome.error}" if outcome.error else ""
                logger.log(level, nice_task_message(ended) + error, extra=task_log_fields(ended))
        else:
            logger.warning(
                "%s: outcome %s not recorded, the task was changed by someone else "
                "(revoked or rescued) meanwhile",
                outcome.task.info(),
                states.status_string(outcome.status),
            )

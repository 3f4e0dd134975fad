"""The pruner: a worker-side retention policy that deletes old finished tasks in small batches.

Finished tasks (SUCCESS, FAILURE, REVOKED) stay in the task table until something deletes
them. Claims never read them (they use the partial index ``task_claimable_job``), so history does
not slow claiming; it costs disk, vacuum time and index size. The pruner is optional
(``Worker(prune_after=...)``); ``pgqueue prune --older-than 7d`` does the same once, from the
command line.

Trade-offs, and why it works this way:

* **Small batches, each its own transaction** (the store's ``prune_tasks``, ``batch``
  rows, oldest first): locks are held for milliseconds, WAL comes in small pieces, and a
  replica or a long report is never blocked behind one huge ``DELETE``.
* **``FOR UPDATE SKIP LOCKED``**: any number of workers may prune at once; they never wait
  for each other nor for an operator retrying a task, so pruning cannot deadlock.
* **Apart from the claim path**: it runs on its own thread and connection (one more
  connection per worker while enabled), never inside a claim or a finish.
* **Pauses between batches** (``pause`` seconds) leave the disk to the claimers; a round
  ends when a batch deletes fewer than ``batch`` rows, and the next starts ``interval``
  seconds later.
* Deleted rows become dead tuples: autovacuum (tuned on the task table by revision
  ``pgqueue_0001_core``) makes the space reusable; the table does not shrink on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from . import _db, states
from ._service import Service
from ._store import Store

logger = logging.getLogger("pgqueue.pruner")


class Pruner(Service):
    """Deletes tasks that finished more than ``older_than`` seconds ago, in the background.

    :param dsn: the database.
    :param schema: the schema of pgqueue's tables.
    :param older_than: seconds since ``time_ended`` after which a finished task is deleted.
    :param task_states: which finished states to delete (default SUCCESS, FAILURE, REVOKED);
        QUEUED, STARTED and RETRY tasks are never deleted whatever is given here.
    :param batch: most rows deleted per statement (and per transaction).
    :param interval: seconds between pruning rounds.
    :param pause: seconds between two batches of one round.

    :meth:`start` runs the first round at once on a background thread; :meth:`stop` stops
    after the current batch. Raises :class:`ValueError` for a negative age or a non-positive
    batch, interval or pause. Database errors are logged and the round is retried at the next
    interval.
    """

    def __init__(
        self,
        dsn: str,
        schema: str,
        older_than: float,
        *,
        task_states: Iterable[int] = states.READY_STATES,
        batch: int = 1000,
        interval: float = 60.0,
        pause: float = 0.05,
    ) -> None:
        if older_than < 0 or batch < 1 or interval <= 0 or pause < 0:
            raise ValueError("older_than and pause must be >= 0; batch and interval positive")
        self.dsn = dsn
        self.store = Store(schema)
        self.older_than = float(older_than)
        self.task_states = sorted(set(task_states) & states.READY_STATES)
        self.batch = batch
        self.interval = interval
        self.pause = pause
        #: Tasks deleted since the pruner was made, counted batch by batch (the metrics).
        self.deleted = 0
        super().__init__("pgqueue-pruner")

    def prune(self) -> int:
        """Run one round now, on a new connection; return how many tasks it deleted."""
        total = 0
        op = self.store.prune_tasks(
            states=self.task_states, older_than=self.older_than, limit=self.batch
        )
        with _db.connect(self.dsn, application_name="pgqueue-pruner") as conn:
            while not self.stopping:
                deleted = op.run(conn)
                total += deleted
                self.deleted += deleted
                if deleted < self.batch:
                    break
                self._wake.wait(self.pause)
        if total:
            logger.info("pruned %d finished tasks older than %gs", total, self.older_than)
        return total

    def run_once(self) -> float:
        """One round (:meth:`prune`); the next comes ``interval`` seconds later."""
        self.prune()
        return self.interval

    def on_error(self, exc: Exception) -> float:
        """A lost database must not end the worker's pruning: retry at the next interval."""
        logger.warning("pruning failed (%s); next round in %gs", exc, self.interval)
        return self.interval

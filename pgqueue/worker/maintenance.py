"""Maintenance: the worker's service that rescues the tasks of lost workers and revokes
expired tasks, apart from the claim path.

Every ``lease/4`` seconds it rescues the tasks of lost workers and its own orphans
(:mod:`pgqueue._rescuer`), and every ``poll_timeout`` seconds it revokes queued tasks whose
``expiry`` passed (the sweep, :data:`SWEEP_BATCH` at most per statement) and deletes rate-limit
start-log rows whose window passed (:data:`FLOW_START_BATCH` at most per round: the rows of
limit keys never used again would stay for ever otherwise), all on the claimer's connection
(it is free between claims, so maintenance adds no connection). Deleting old finished tasks is the
:class:`pgqueue._pruner.Pruner` service, on a connection of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from .._errors import first_line
from .._rescuer import rescue_lost_tasks, rescue_orphaned_tasks
from .._retry import ExponentialBackoff
from .._service import Service
from .._store import Store

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]

#: Most expired tasks revoked by one sweep statement.
SWEEP_BATCH = 1000

#: Most rate-limit start-log rows (``flow_start``) deleted by one sweep.
FLOW_START_BATCH = 1000


class Maintenance(Service):
    """Rescues and sweeps for the worker (see the module docstring).

    :param pool: the claimer's pool of one connection, shared between rounds.
    :param worker_id: this worker: its own tasks are never rescued (F23).
    :param queues: the queues whose expired tasks are revoked.
    :param rescue_every: seconds between rescues (``lease/4``).
    :param sweep_every: seconds between sweeps (``poll_timeout``).
    :param rescue_backoff: the delay before the next attempt of a rescued task.
    :param on_rescued: told after a rescue changed tasks (they may be claimable now).
    :param claimed: the ids of the tasks the worker holds; with ``orphan_after`` (seconds, the
        lease), each rescue also rescues the worker's own orphans: tasks STARTED under it for
        longer than that which it does not hold (:func:`pgqueue._rescuer.rescue_orphaned_tasks`).

    Errors are logged and the round retried with a backoff (0.5 s doubling to 10 s).
    """

    def __init__(
        self,
        pool: ConnectionPool[Connection],
        store: Store,
        queues: Sequence[str],
        *,
        worker_id: str,
        rescue_every: float,
        sweep_every: float,
        rescue_backoff: ExponentialBackoff,
        on_rescued: Callable[[], None],
        claimed: Callable[[], list[str]] | None = None,
        orphan_after: float = 0.0,
    ) -> None:
        super().__init__("pgqueue-maintenance")
        self._pool = pool
        self.store = store
        self.queues = list(queues)
        self.worker_id = worker_id
        self.rescue_every = rescue_every
        self.sweep_every = sweep_every
        self.rescue_backoff = rescue_backoff
        self._on_rescued = on_rescued
        self._claimed = claimed
        self.orphan_after = orphan_after
        self._next_rescue = self._next_sweep = 0.0

    def run_once(self) -> float:
        """Rescue and sweep if due; return the seconds until the next is due."""
        if time.monotonic() >= self._next_rescue:
            self.rescue()
            self._next_rescue = time.monotonic() + self.rescue_every
        if time.monotonic() >= self._next_sweep:
            self.sweep()
            self._next_sweep = time.monotonic() + self.sweep_every
        self.succeeded()
        return max(min(self._next_rescue, self._next_sweep) - time.monotonic(), 0.005)

    def on_error(self, exc: Exception) -> float:
        """Log a failed round (in the claimer's words) and back off."""
        delay = self.backoff()
        if isinstance(exc, psycopg.OperationalError):
            logger.warning("database unavailable (%s); retrying in %.1fs", first_line(exc), delay)
        elif isinstance(exc, (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)):
            logger.error(
                "pgqueue's tables are gone (%s): run `pgqueue migrate`; retrying in %.1fs",
                first_line(exc),
                delay,
            )
        else:
            logger.error("maintenance failed (%s); retrying in %.1fs", first_line(exc), delay)
        return delay

    def rescue(self) -> None:
        """Rescue the tasks of lost workers now, and this worker's own orphans."""
        with self._pool.connection() as conn:
            rescued = rescue_lost_tasks(
                conn, self.store, self.rescue_backoff, worker=self.worker_id
            )
            if self._claimed is not None:
                rescued += rescue_orphaned_tasks(
                    conn,
                    self.store,
                    self.rescue_backoff,
                    worker=self.worker_id,
                    claimed=self._claimed(),
                    after=self.orphan_after,
                )
        if rescued:
            self._on_rescued()

    def sweep(self) -> None:
        """Revoke up to :data:`SWEEP_BATCH` expired tasks and delete up to
        :data:`FLOW_START_BATCH` start-log rows past their window now."""
        with self._pool.connection() as conn:
            rows = self.store.revoke_expired(queues=self.queues, limit=SWEEP_BATCH).run(conn)
            pruned = self.store.prune_flow_starts(limit=FLOW_START_BATCH).run(conn)
        if rows:
            logger.info("revoked %d expired tasks", len(rows))
        if pruned:
            logger.debug("deleted %d rate-limit start-log rows past their window", pruned)

"""The claimer: the worker's service that claims tasks and hands them to the executor.

Each round claims up to the free slots with ``SELECT ... FOR UPDATE SKIP LOCKED``
(``CLAIM_UNLIMITED_TASKS``, or ``CLAIM_TASKS`` when limits are in play) on the claimer's own
connection, hands each claimed task to the executor and reports the claim to ``on_claimed``.
A slot frees when its job returns, so the next claim overlaps the write of the previous
outcomes; at most ``backlog`` returned tasks wait for that write. When nothing more can be
claimed it sleeps until woken (a notification, a freed slot, a rescue), the next delayed task
is due or ``poll_timeout`` passed. The loop ends after ``max_tasks`` tasks, or (``burst``)
once nothing is claimable and nothing runs.

Enqueues notify only when a worker needs it (revision pgqueue_0017_fewer_notifications, F32): a
claimer that LISTENs and whose claim came up short *waits*. Its next claim, and every claim
while it waits, comes after :meth:`~pgqueue._store.Store.wait_for_tasks` (its
``queue_waiter`` rows, written when missing or half their :data:`WAITER_LEASE` old) and
:meth:`~pgqueue._store.Store.settle_enqueues`; when an enqueue that did not notify is still
open it claims again within :data:`UNSETTLED_PAUSE` seconds instead of sleeping. After
:data:`BUSY_AFTER` seconds of claims that fill every free slot its rows are deleted and it
waits no more, so that enqueues stop notifying while none of their workers sleeps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg
from psycopg_pool import ConnectionPool

from .. import _db, states
from .. import _tracing as tracing
from .._errors import first_line
from .._service import Service
from .._store import Store, session
from .._task import Task, nice_task_message

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]

#: Claims made with the flow-controlled statement straight away once a claim without limits
#: found limited candidates, before the cheaper statement is tried again (see
#: :meth:`Claimer.claim_tasks`): with limits in play, one claim in this many pays for both.
FLOW_STREAK = 100

#: Seconds a waiting worker's ``queue_waiter`` rows live unless renewed (at least three
#: ``poll_timeout``): a worker that died stops making enqueues notify after this long.
WAITER_LEASE = 60.0

#: Seconds of claims that fill every free slot after which a waiting worker waits no more.
BUSY_AFTER = 1.0

#: Shortest and longest pause (seconds) before claiming again while an enqueue that did not
#: notify is open on the worker's queues, doubling in between: a task is claimed within
#: milliseconds of such an enqueue's commit, and an enqueue left open in a long transaction
#: costs each waiting worker two claims a second.
UNSETTLED_PAUSE = (0.005, 0.5)


class Slots(Protocol):
    """What the claimer needs of the executor: how full it is, and a way to start a task."""

    @property
    def in_flight(self) -> int:
        """Tasks claimed and not yet written."""

    @property
    def jobs_still_running(self) -> int:
        """Job threads that have not returned."""

    def submit(self, task: Task, provider_set: bool) -> None:
        """Start ``task``."""


class Claimer(Service):
    """Claims tasks of ``jobs`` from ``queues`` for worker ``worker_id`` (see the module
    docstring).

    :param pool: the claimer's pool of one connection (see :func:`claim_session`).
    :param slots: the executor the tasks go to.
    :param backlog: the most tasks run at once; ``max_tasks``, ``burst`` and
        ``poll_timeout`` as for :class:`pgqueue.Worker`.
    :param on_claimed: told the rows of every claim (tasks revoked as expired included).
    :param fair: take turns between ``queues`` (``--queue-order fair``) instead of strict
        priority and run_at order across them.
    """

    def __init__(
        self,
        pool: ConnectionPool[Connection],
        store: Store,
        worker_id: str,
        queues: Sequence[str],
        jobs: Sequence[str],
        slots: Slots,
        *,
        backlog: int,
        max_tasks: int,
        burst: bool,
        poll_timeout: float,
        on_claimed: Callable[[list[Task]], None],
        fair: bool = False,
    ) -> None:
        super().__init__("pgqueue-claimer")
        self._pool = pool
        self.store = store
        self.worker_id = worker_id
        self.queues = list(queues)
        self.jobs = list(jobs)
        self.slots = slots
        self.backlog = backlog
        self.max_tasks = max_tasks
        self.burst = burst
        self.poll_timeout = poll_timeout
        self._on_claimed = on_claimed
        self.fair = fair
        #: Tasks started so far.
        self.processed = 0
        #: Claims left to make with the flow-controlled statement straight away, because a
        #: recent claim without limits found limited candidates (see :meth:`claim_tasks`).
        self._flow_claims = 0
        #: Whether this worker LISTENs on its queues' ``task_queued`` channels, so it may wait
        #: for notifications (set when the worker starts its listener).
        self.notified = False
        #: Whether this worker waits for work (see the module docstring): since a claim came
        #: up short, until :data:`BUSY_AFTER` seconds of full claims.
        self.waiting = False
        #: When (monotonic) the waiter rows are to be written again; None: not written yet.
        self._renew_at: float | None = None
        #: Since when (monotonic) claims have filled every free slot; None: the last came up
        #: short.
        self._busy_since: float | None = None
        #: Pause before the next claim while an enqueue that did not notify is open.
        self._unsettled_pause = UNSETTLED_PAUSE[0]
        #: Whether the last claim took every enqueue lock of the queues (see the module
        #: docstring).
        self._settled = True

    def run_once(self) -> float | None:
        """Claim what fits; return 0 when there may be more, the seconds to sleep otherwise,
        None when the claimer is done (``max_tasks`` started, or ``burst`` and idle)."""
        # Read before the claim: an outcome written while the claim runs (a RETRY due at
        # once, say) may be committed after the claim's snapshot, so "nothing in flight"
        # sampled afterwards would end a --burst worker with that retry left behind.
        idle_before = not self.slots.in_flight
        wanted = self.free_slots()
        claimed = self.claim(wanted) if wanted else 0
        if self.max_tasks and self.processed >= self.max_tasks:
            logger.info("processed %d tasks (max_tasks); exiting", self.processed)
            return None
        if wanted and claimed == wanted:
            if self._busy_since is None:
                self._busy_since = time.monotonic()
            return 0.0  # there may be more
        if wanted:
            self._busy_since = None
        if self.burst and not claimed and idle_before:
            logger.info("nothing left to claim (burst); exiting")
            return None
        if wanted and self.notified and not self.waiting:
            self.waiting = True
            return 0.0  # claim again as a waiter before sleeping (see the module docstring)
        sleep = self.poll_timeout
        if wanted and not self._settled:  # an enqueue that did not notify is open
            sleep = self._unsettled_pause
            self._unsettled_pause = min(self._unsettled_pause * 2, UNSETTLED_PAUSE[1])
        elif wanted:
            sleep = min(sleep, self.seconds_to_next_due())
        self.succeeded()
        return max(sleep, 0.005)

    def on_error(self, exc: Exception) -> float:
        """Retry with a backoff while the database is away or its tables are gone; any other
        error ends the worker (raised from :meth:`run`)."""
        self._renew_at = None  # the server may have lost the waiter rows: write them again
        if isinstance(exc, psycopg.OperationalError):
            delay = self.backoff()
            logger.warning("database unavailable (%s); retrying in %.1fs", first_line(exc), delay)
        elif isinstance(exc, (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)):
            # dropped under a running worker (a re-migration?): wait for it to come back
            delay = self.backoff()
            logger.error(
                "pgqueue's tables are gone (%s): run `pgqueue migrate`; retrying in %.1fs",
                first_line(exc),
                delay,
            )
        else:
            raise exc
        return max(delay, 0.005)

    def free_slots(self) -> int:
        """How many tasks the next claim may take."""
        # A slot frees when its job returns, so the next claim overlaps the write of the
        # previous outcomes; at most `backlog` returned tasks wait for that write.
        free = min(
            self.backlog - self.slots.jobs_still_running, 2 * self.backlog - self.slots.in_flight
        )
        if self.max_tasks:
            free = min(free, self.max_tasks - self.processed)
        return max(free, 0)

    def claim(self, limit: int) -> int:
        """Claim up to ``limit`` tasks and start them; return how many started.

        The tasks reach the executor before the connection goes back to its pool of one,
        which maintenance shares: its rescue of this worker's orphans (STARTED under it and
        not held) never runs between a claim's commit and the executor holding the tasks,
        even when the process was frozen right there."""
        with self._pool.connection() as conn:
            self._settled = self.prepare_claim(conn)
            tasks = self.claim_tasks(conn, limit)
            self._on_claimed(tasks)
            started = 0
            provider_set = tracing.configured()
            for task in tasks:
                if task.status != states.STARTED:  # expired, or attempts at its limit
                    logger.info("%s (%s)", nice_task_message(task), task.error)
                    continue
                started += 1
                self.processed += 1
                self.slots.submit(task, provider_set)
        return started

    def prepare_claim(self, conn: Connection) -> bool:
        """What runs on the claim's connection before a claim of a waiting worker: its
        waiter rows (written when missing or due for renewal) and the queues' enqueue locks;
        after :data:`BUSY_AFTER` seconds of full claims, the deletion of its rows instead.
        Returns whether every enqueue lock was taken (True when not waiting). A role that
        may not write the rows is told once, and the worker waits as one that cannot LISTEN."""
        if not (self.notified and self.waiting):
            return True
        now = time.monotonic()
        try:
            if self._busy_since is not None and now - self._busy_since >= BUSY_AFTER:
                self.store.stop_waiting(worker=self.worker_id).run(conn)
                self.waiting, self._renew_at = False, None
                self._unsettled_pause = UNSETTLED_PAUSE[0]
                return True
            if self._renew_at is None or now >= self._renew_at:
                lease = max(WAITER_LEASE, 3 * self.poll_timeout)
                self.store.wait_for_tasks(
                    queues=self.queues, worker=self.worker_id, lease=lease
                ).run(conn)
                self._renew_at = now + lease / 2
        except psycopg.errors.InsufficientPrivilege as exc:
            logger.warning(
                "this worker's role may not run pgqueue's wait_for_tasks or stop_waiting (%s): "
                "GRANT EXECUTE on them to it; until then an enqueue that did not notify is "
                "claimed at the next poll (--poll-timeout)",
                first_line(exc),
            )
            self.notified = self.waiting = False
            return True
        settled = self.store.settle_enqueues(queues=self.queues).run(conn)
        if settled:
            self._unsettled_pause = UNSETTLED_PAUSE[0]
        return settled

    def claim_tasks(self, conn: Connection, limit: int) -> list[Task]:
        """Claim up to ``limit`` tasks in ``conn``'s transaction and return them. In strict
        order it first claims without flow control (``CLAIM_UNLIMITED_TASKS``: the cost of a
        claim before limits existed); that claim starts nothing when any of its candidates is
        limited, whatever process set the limit, and then the flow-controlled claim
        (``CLAIM_TASKS``) runs, in the same transaction. The choice is only about cost: after
        a claim that needed flow control, the next :data:`FLOW_STREAK` claims go to it
        directly, then the cheap one is tried again."""
        if self.fair or self._flow_claims:
            self._flow_claims = max(self._flow_claims - 1, 0)
            return self._claim_with_flow(conn, limit)
        tasks = self.store.claim_unlimited_tasks(
            queues=self.queues, jobs=self.jobs, limit=limit, worker=self.worker_id
        ).run(conn)
        if tasks:
            return tasks
        tasks = self._claim_with_flow(conn, limit)
        if tasks:  # so the claim without limits found a limited candidate
            self._flow_claims = FLOW_STREAK
        return tasks

    def _claim_with_flow(self, conn: Connection, limit: int) -> list[Task]:
        return self.store.claim_tasks(
            queues=self.queues, jobs=self.jobs, limit=limit, worker=self.worker_id, fair=self.fair
        ).run(conn)

    def seconds_to_next_due(self) -> float:
        """Seconds until the next delayed task of the queues is due (``poll_timeout`` if none)."""
        with self._pool.connection() as conn:
            seconds = self.store.next_run_at(queues=self.queues).run(conn)
        return self.poll_timeout if seconds is None else max(seconds, 0.0)


def claim_session(conn: Connection) -> None:
    """Set up the claimer's connection: its prepared statements keep one generic plan
    (``plan_cache_mode = force_generic_plan``), so a claim is planned once, not on every
    execution (~0.2 ms of each claim otherwise), and are never JIT-compiled (``jit = off``:
    see :func:`pgqueue._store.session.claim_session`). The claim's plan walks the partial index
    task_claimable_job and reads the picked rows by primary key whatever its parameters (see
    ``CLAIM_TASKS``). Claims commit durably, like everything pgqueue writes: a claim a
    server crash forgot could run its task a second time beside the first.

    A connection without prepared statements (``prepare_threshold`` None: through a
    transaction pooler, :func:`pgqueue._db.connection_options`) gets no ``SET``: the settings
    are session state the pooler would leave on some other client's server connection, and
    there is no prepared plan to keep (each claim is planned with its parameters, at a cost
    far below ``jit_above_cost``).
    """
    _db.configure(conn)
    if conn.prepare_threshold is not None:
        session.claim_session(conn)

"""The :class:`Worker`: wires the services of one worker process and owns its shutdown."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .. import _db
from .._exits import EXIT_REPLACE
from .._replica import require_writable
from .._service import Service
from .._store import Store
from .._values import check_queue
from ..backend import TaskBackend
from ..errors import ConfigurationError
from ..jobs import JobRegistry
from ..listener import listen_target
from ..pruner import Pruner
from ..retry import DEFAULT_BACKOFF, ExponentialBackoff
from ..scheduler import Scheduler
from ..schema import check_schema
from .claimer import Claimer, claim_session
from .completer import Completer
from .events import WorkerEvents
from .executor import Executor
from .heartbeat import Heartbeat
from .listener import worker_listener
from .maintenance import Maintenance
from .outcome import Outcome

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]

#: The options of the claimer's and the completer's connections, before
#: :func:`pgqueue._db.connection_options` adds what the probe found at :meth:`Worker.run`.
POOL_KWARGS: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}


def worker_identity() -> str:
    """``host:pid:random``: unique to this process start, even when a pid is reused."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


#: The values of ``Worker(queue_order=...)`` and ``pgqueue-worker --queue-order``.
QUEUE_ORDERS = ("strict", "fair")


class Worker:
    """Runs tasks from one database until stopped (pulsar's task-queue worker).

    :param dsn: the database; None reads ``$PGQUEUE_DSN``.
    :param task_paths: modules to load jobs from; a worker claims only tasks of these jobs.
    :param name: the default queue (pulsar's backend name).
    :param queues: the queues to claim from; default ``[name]``.
    :param backlog: the most tasks run at once (pulsar's ``backlog``/``concurrent_tasks``).
    :param max_tasks: after starting this many tasks, finish them and exit; 0: no limit.
    :param poll_timeout: seconds between claims when no notification arrives (fallback only).
    :param burst: exit once nothing is claimable and nothing runs.
    :param lease: seconds after the last heartbeat after which this worker counts as lost
        and its tasks are rescued by any worker (heartbeats come every ``lease/4`` seconds).
    :param shutdown_timeout: seconds :meth:`stop` lets running tasks finish before giving
        them back. Outcomes of jobs that returned are written before :meth:`run` returns,
        waiting for the write as long as this worker holds its lease (F25).
    :param rescue_backoff: delay before the next attempt of a task rescued from a lost worker.
    :param hard_time_limits: for worker processes under the supervisor (``--processes``): a
        thread job still running ``HARD_LIMIT_GRACE`` seconds past its ``time_limit`` makes
        the worker stop at once (as on a second SIGTERM: the other running tasks are given
        back) and :meth:`run` return ``EXIT_REPLACE`` (75), so the process exits, killing the
        thread, and the supervisor starts a new one. The overrunning task stays STARTED and
        the worker's row is not marked stopped, so no one else runs it while its thread can
        still run (F22): one lease after the process's last heartbeat the rescue settles it
        (RETRY or FAILURE). The same happens when the worker finds it lost its lease on a
        task it still runs (F21).
    :param schema: the schema of pgqueue's tables.
    :param schedule_periodic: also run a scheduler that queues the periodic jobs of the
        registry at their ticks (pulsar's ``--schedule-periodic``); any number of workers may.
    :param queue_order: how a worker on several queues picks among them: ``"strict"``
        (default: priority, then run_at, across all queues, as before) or ``"fair"`` (each
        queue takes its turn, so one queue's backlog never holds back another's tasks: F31).
    :param prune_after: also run a pruner that deletes tasks finished more than this many
        seconds ago, in batches, every minute (:class:`pgqueue.pruner.Pruner`); None: never.
    :param listen_dsn: where the worker LISTENs, straight to PostgreSQL, when ``dsn`` goes
        through a transaction pooler; None reads ``$PGQUEUE_LISTEN_DSN``; without one the
        worker LISTENs through ``dsn`` or, behind a transaction pooler, polls every
        ``poll_timeout`` seconds (decided by a probe at :meth:`run`, logged in one line).

    Raises :class:`pgqueue.errors.ConfigurationError` for a backlog below 1, a non-positive
    ``poll_timeout`` or ``lease``, an unknown ``queue_order``, or a registry without jobs.
    :attr:`events` reports claims and written outcomes to subscribers
    (:class:`pgqueue.worker.events.WorkerEvents`).
    """

    def __init__(
        self,
        dsn: str | None = None,
        task_paths: Sequence[str] = (),
        name: str = "tasks",
        *,
        queues: Sequence[str] | None = None,
        backlog: int = 4,
        max_tasks: int = 0,
        poll_timeout: float = 2.0,
        burst: bool = False,
        lease: float = 30.0,
        shutdown_timeout: float = 30.0,
        rescue_backoff: ExponentialBackoff = DEFAULT_BACKOFF,
        hard_time_limits: bool = False,
        schema: str | None = None,
        registry: JobRegistry | None = None,
        schedule_periodic: bool = False,
        prune_after: float | None = None,
        listen_dsn: str | None = None,
        queue_order: str = "strict",
    ) -> None:
        if backlog < 1:
            raise ConfigurationError("backlog must be at least 1")
        if queue_order not in QUEUE_ORDERS:
            raise ConfigurationError(
                f"queue_order must be one of {', '.join(QUEUE_ORDERS)}, not {queue_order!r}"
            )
        self.queue_order = queue_order
        if poll_timeout <= 0 or lease <= 0:
            raise ConfigurationError("poll_timeout and lease must be positive seconds")
        self.dsn = _db.resolve_dsn(dsn)
        self.listen_dsn = _db.resolve_listen_dsn(listen_dsn)
        self.schema = _db.resolve_schema(schema)
        self.name = name
        self.queues = [check_queue(q) for q in (queues or [name])]
        self.backlog = backlog
        self.max_tasks = max_tasks
        self.poll_timeout = poll_timeout
        self.burst = burst
        self.lease = lease
        self.shutdown_timeout = shutdown_timeout
        self.rescue_backoff = rescue_backoff
        self.hard_time_limits = hard_time_limits
        self.exit_code = 0
        self.given_back = 0
        self.id = worker_identity()
        self.store = Store(self.schema)
        self.registry = registry if registry is not None else JobRegistry.load(task_paths)
        if not len(self.registry):
            raise ConfigurationError(
                f"no jobs in task paths {', '.join(task_paths) or '(none)'}: a worker without "
                "jobs could never claim a task. Name the modules that define your jobs."
            )
        self.client = TaskBackend(
            self.dsn,
            name=name,
            registry=self.registry,
            schema=self.schema,
            listen_dsn=self.listen_dsn,
        )
        self.events = WorkerEvents()
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._stop_deadline: float | None = None
        self._wire(schedule_periodic, prune_after)

    def _wire(self, schedule_periodic: bool, prune_after: float | None) -> None:
        """Build the services (nothing connects before :meth:`run`) and connect their events."""
        self._claim_pool = _one_connection(self.dsn, "pgqueue-worker", claim_session)
        self._finish_pool = _one_connection(self.dsn, "pgqueue-worker", _db.configure)
        self._completer = completer = Completer(
            self._finish_pool, self.store, self.id, self._written
        )
        self._executor = executor = Executor(
            self.registry,
            self.client,
            self.id,
            self.backlog,
            hard_time_limits=self.hard_time_limits,
            poll_timeout=self.poll_timeout,
            on_outcome=completer.put,
            on_slot_free=lambda: self._claimer.wake(),
            on_overrun=self._overran,
        )
        self._claimer = claimer = Claimer(
            self._claim_pool,
            self.store,
            self.id,
            self.queues,
            list(self.registry),
            executor,
            backlog=self.backlog,
            max_tasks=self.max_tasks,
            burst=self.burst,
            poll_timeout=self.poll_timeout,
            on_claimed=self.events.claimed,
            fair=self.queue_order == "fair",
        )
        self._maintenance = Maintenance(
            self._claim_pool,
            self.store,
            self.queues,
            worker_id=self.id,
            rescue_every=self.lease / 4,
            sweep_every=self.poll_timeout,
            rescue_backoff=self.rescue_backoff,
            on_rescued=claimer.wake,
        )
        self._listener = worker_listener(self.dsn, self.queues, claimer.wake, executor.revoke)
        self._heartbeat = Heartbeat(
            self.dsn,
            self.store,
            self.id,
            self.lease,
            self.queues,
            self.backlog,
            on_revoked=executor.revoke,
            on_stopped=self._stopped_elsewhere,
            held=executor.held,
            on_lost=self._lease_lost,
        )
        #: The optional scheduler and pruner (None when not asked for; read by the metrics).
        self.scheduler = (
            Scheduler(self.dsn, self.registry, name=self.name, schema=self.schema)
            if schedule_periodic
            else None
        )
        self.pruner = (
            Pruner(self.dsn, self.schema, prune_after) if prune_after is not None else None
        )
        #: Optional services, started first and stopped first.
        self._extras: list[Service] = [s for s in (self.scheduler, self.pruner) if s is not None]

    def __repr__(self) -> str:
        return f"<Worker {self.id} queues={','.join(self.queues)}>"

    # -- what the services report ------------------------------------------------------------

    def _written(self, batch: list[Outcome], written: Mapping[str, datetime | None]) -> None:
        """The completer committed ``batch``: report it, forget its tasks, claim again."""
        self.events.finished(batch, written)
        self._executor.forget(batch)
        self._claimer.wake()

    def _overran(self) -> None:
        """A thread job overran its hard limit: replace this process at once to kill it."""
        self.exit_code = EXIT_REPLACE
        self._stop_now()

    def _lease_lost(self, task_ids: list[str]) -> None:
        """The heartbeat found tasks this worker still runs no longer STARTED under it (it
        was frozen past its lease and they were rescued, F21): tell them to stop; nothing of
        them is written. With hard time limits the process is replaced to end their threads."""
        told = self._executor.lose(task_ids)
        if not told:
            return
        logger.error(
            "worker %s lost its lease on %d running tasks (was it frozen past its lease?): "
            "they were rescued and may run elsewhere; told them to stop, nothing of them will "
            "be recorded: %s",
            self.id,
            len(told),
            ", ".join(task.info() for task in told),
        )
        if self.hard_time_limits and any(not self.registry[t.name].is_async for t in told):
            self.exit_code = EXIT_REPLACE
            self._stop_now()

    def _stopped_elsewhere(self) -> None:
        """The heartbeat found this worker's row marked stopped by someone else: its tasks
        are being rescued, so it must not claim more, and what it runs is no longer its own."""
        if not self._stopping.is_set():
            logger.error("worker %s was marked stopped by someone else; stopping", self.id)
        self._lease_lost([task_id for task_id, _ in self._executor.held()])
        self.stop()

    def _stop_now(self) -> None:
        """Stop without waiting for running tasks (as a second :meth:`stop`)."""
        if not self._stopping.is_set():
            self.stop()
        if not self._abort.is_set():
            self.stop()

    # -- state -------------------------------------------------------------------------------

    @property
    def processed(self) -> int:
        """How many tasks this worker started."""
        return self._claimer.processed

    @property
    def in_flight(self) -> int:
        """How many tasks are claimed and not yet recorded as finished."""
        return self._executor.in_flight

    @property
    def jobs_still_running(self) -> int:
        """How many job threads are still running, e.g. those given back at shutdown (a
        thread cannot be killed: the ``pgqueue-worker`` process exits without waiting)."""
        return self._executor.jobs_still_running

    @property
    def listener_reconnects(self) -> int:
        """How many times the listener's connection was lost and re-established."""
        return self._listener.reconnects

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once the running tasks have finished, or after
        ``shutdown_timeout`` seconds having given back those that did not. A second call gives
        them back at once (the second Ctrl-C)."""
        running = self._executor.running
        if self._stopping.is_set():
            logger.warning("stopping at once: giving back %d running tasks", running)
            self._abort.set()
        else:
            logger.info(
                "stopping: no more claims; waiting up to %.1fs for %d running tasks "
                "(%d finished, their outcomes being recorded)",
                self.shutdown_timeout,
                running,
                self.in_flight - running,
            )
            self._stop_deadline = time.monotonic() + self.shutdown_timeout
            self._stopping.set()
        self._claimer.stop()  # also ends the wait of a draining run()

    def run(self) -> int:
        """Run until stopped, ``max_tasks`` reached or (``burst``) the queue is empty.

        Returns the exit status: 0, or ``EXIT_REPLACE`` after killing an overrunning job
        (``hard_time_limits``). Raises :class:`pgqueue.errors.SchemaError` when the schema
        is missing or outdated, :class:`pgqueue.errors.ConfigurationError` when the DSN
        reaches a standby or a read-only session (or its listen DSN a transaction pooler),
        and :class:`pgqueue.errors.ConnectionFailed` when the database cannot be reached at
        start-up.
        """
        with _db.connect(self.dsn, application_name="pgqueue-worker") as conn:
            check_schema(conn, self.schema, self.dsn)
            require_writable(conn, self.store, self.dsn)
            listen_on = listen_target(self.dsn, self.listen_dsn, f"worker {self.id}")
            self._heartbeat.register(conn)  # last: a worker refused above is never registered
        logger.info(
            "worker %s started: queues %s, jobs %s, backlog %d",
            self.id,
            ",".join(self.queues),
            ",".join(self.registry),
            self.backlog,
        )
        self._start(listen_on)
        try:
            self._claimer.run()  # on this thread, until stopped, max_tasks or burst
            self._drain()
        finally:
            self._shutdown()
        logger.info("worker %s stopped after %d tasks", self.id, self.processed)
        return self.exit_code

    def _start(self, listen_on: str | None) -> None:
        """Start the services; the listener on ``listen_on``, not at all when None."""
        options = _db.connection_options(self.dsn)  # probed by run()'s first connect
        for pool in (self._claim_pool, self._finish_pool):
            pool.kwargs = {**POOL_KWARGS, **options}
            pool.open()
        self._executor.start()
        if listen_on is not None:
            self._listener.dsn = listen_on
            self._listener.start()
        for extra in self._extras:
            extra.start()
        self._maintenance.round()  # rescue and sweep before the first claim
        self._maintenance.start()
        self._completer.start()
        self._heartbeat.start()

    def _drain(self) -> None:
        """Wait for running jobs: for ever after ``max_tasks``, until the shutdown deadline
        after :meth:`stop`, not at all after a second stop. Outcomes still to be written are
        the business of :meth:`_record_outcomes`."""
        while self._executor.running and not self._abort.is_set():
            deadline = self._stop_deadline
            if deadline is not None and time.monotonic() >= deadline:
                logger.warning(
                    "shutdown timeout (%.1fs) passed with %d tasks running",
                    self.shutdown_timeout,
                    self._executor.running,
                )
                return
            self._claimer.sleep(0.2)  # woken by every write

    def _shutdown(self) -> None:
        """Stop the services; write the outcomes held and those that came in late, give back
        the rest, and mark the row stopped (unless an overrunning thread lives: F22)."""
        for service in (*self._extras, self._maintenance):
            service.stop()
        self._record_outcomes()
        self._heartbeat.stop()
        self._completer.give_up()  # a write still retrying gives up: the lease covers it
        self._completer.write_late()  # jobs that returned meanwhile are not given back
        unfinished = self._executor.take_unfinished()
        if unfinished:
            self.given_back = self._completer.give_back(unfinished, self.lease)
        self._listener.stop()
        self._executor.stop()
        if self._executor.overran:
            logger.warning(
                "worker %s is not marked stopped: its overrunning tasks are rescued %.1fs "
                "after its last heartbeat, once this process (and their threads) has ended",
                self.id,
                self.lease,
            )
        else:
            self._heartbeat.sign_off()
        self._claim_pool.close()
        self._finish_pool.close()
        self.client.close()

    def _record_outcomes(self) -> None:
        """Let the completer write every outcome it holds (jobs that returned) before the
        worker goes (F25): as long as the heartbeat keeps this worker's lease (a write blocked
        behind another session's lock may take a while, and those tasks must not be rescued
        and run again), until a second :meth:`stop`, or until the lease ran out."""
        self._completer.stop(timeout=0)
        warned = time.monotonic()
        while not self._completer.wait(0.2):
            now = time.monotonic()
            if self._abort.is_set():
                return
            if now - self._heartbeat.beaten_at > self.lease:
                logger.error(
                    "giving up recording the outcomes of %d finished tasks: no heartbeat for "
                    "%.1fs, the lease is gone",
                    self.in_flight - self._executor.running,
                    now - self._heartbeat.beaten_at,
                )
                return
            if now - warned >= 5:
                warned = now
                logger.warning(
                    "still recording the outcomes of %d finished tasks (is the write waiting "
                    "for a lock?); waiting while the heartbeat holds the lease; stop again to "
                    "give up",
                    self.in_flight - self._executor.running,
                )


def _one_connection(
    dsn: str, application_name: str, configure: Callable[[Connection], None]
) -> ConnectionPool[Connection]:
    """A pool of exactly one autocommit connection for one thread of the worker, opened by
    :meth:`Worker.run`; it replaces the connection when a statement finds it broken. No
    check on checkout: a broken connection fails its statement instead
    (``OperationalError``: the claimer and the completer retry)."""
    return ConnectionPool(
        _db.conninfo(dsn, application_name),
        min_size=1,
        max_size=1,
        kwargs=dict(POOL_KWARGS),
        configure=configure,
        name=application_name,
        num_workers=1,
        open=False,
    )

"""The :class:`Worker`: wires the services of one worker process and owns its shutdown.

The pieces live beside it: the option checks in :mod:`~pgqueue.worker.options`, the building,
wiring and start of the services in :mod:`~pgqueue.worker.wiring`, their pools in
:mod:`~pgqueue.worker.pools`, and the shutdown sequence in :mod:`~pgqueue.worker.shutdown`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from .. import _db
from .._backend import TaskBackend
from .._exits import EXIT_REPLACE
from .._jobs import JobRegistry
from .._listener import listen_target
from .._replica import require_writable
from .._retry import DEFAULT_BACKOFF, ExponentialBackoff
from .._schema import check_schema
from .._store import Store
from .._values import check_queue
from .activity import SUMMARY_EVERY
from .events import WorkerEvents
from .options import DEFAULT_BACKLOG, check_options, worker_identity, worker_registry
from .outcome import Outcome
from .shutdown import Shutdown
from .wiring import build_services

logger = logging.getLogger("pgqueue.worker")


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
        seconds ago, in batches, every minute (:class:`pgqueue._pruner.Pruner`); None: never.
    :param listen_dsn: where the worker LISTENs, straight to PostgreSQL, when ``dsn`` goes
        through a transaction pooler; None reads ``$PGQUEUE_LISTEN_DSN``; without one the
        worker LISTENs through ``dsn`` or, behind a transaction pooler, polls every
        ``poll_timeout`` seconds (decided by a probe at :meth:`run`, logged in one line).
    :param log_summary_every: seconds between two INFO lines summing up the tasks that ended
        (:mod:`pgqueue.worker.activity`); each task's start and success are logged at DEBUG,
        a retry at WARNING, a failure at ERROR.

    Raises :class:`pgqueue._errors.ConfigurationError` for a backlog below 1, a non-positive
    ``poll_timeout``, ``lease`` or ``log_summary_every``, an unknown ``queue_order``, or a
    registry without jobs.
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
        backlog: int = DEFAULT_BACKLOG,
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
        log_summary_every: float = SUMMARY_EVERY,
    ) -> None:
        check_options(backlog, queue_order, poll_timeout, lease, log_summary_every)
        self.queue_order = queue_order
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
        self.registry = worker_registry(registry, task_paths)
        self.client = TaskBackend(
            self.dsn,
            name=name,
            registry=self.registry,
            schema=self.schema,
            listen_dsn=self.listen_dsn,
        )
        self.events = WorkerEvents()
        self._shutdown = Shutdown(shutdown_timeout)
        # Nothing connects before run().
        self._services = services = build_services(
            self,
            schedule_periodic=schedule_periodic,
            prune_after=prune_after,
            log_summary_every=log_summary_every,
            on_written=self._written,
            on_overrun=self._overran,
            on_stopped=self._stopped_elsewhere,
            on_lost=self._lease_lost,
        )
        self._executor, self._claimer = services.executor, services.claimer
        #: The optional scheduler and pruner (None when not asked for; read by the metrics).
        self.scheduler = services.scheduler
        self.pruner = services.pruner

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

    def _lease_lost(self, runs: list[tuple[str, int]]) -> None:
        """The heartbeat found tasks this worker still runs no longer STARTED under it (it
        was frozen past its lease and they were rescued, F21): tell them to stop; nothing of
        them is written. With hard time limits the process is replaced to end their threads."""
        told = self._executor.lose(runs)
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
        if not self._shutdown.stopping.is_set():
            logger.error("worker %s was marked stopped by someone else; stopping", self.id)
        self._lease_lost(self._executor.held())
        self.stop()

    def _stop_now(self) -> None:
        """Stop without waiting for running tasks (as a second :meth:`stop`)."""
        if not self._shutdown.stopping.is_set():
            self.stop()
        if not self._shutdown.abort.is_set():
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
        return self._services.listener.reconnects

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once the running tasks have finished, or after
        ``shutdown_timeout`` seconds having given back those that did not. A second call gives
        them back at once (the second Ctrl-C)."""
        executor = self._executor
        # an overrun (hard limit) is neither running nor finished: it is left to the rescue
        self._shutdown.request(executor.running, executor.in_flight - executor.overran)
        self._claimer.stop()  # also ends the wait of a draining run()

    def run(self) -> int:
        """Run until stopped, ``max_tasks`` reached or (``burst``) the queue is empty.

        Returns the exit status: 0, or ``EXIT_REPLACE`` after killing an overrunning job
        (``hard_time_limits``). Raises :class:`pgqueue._errors.SchemaError` when the schema
        is missing or outdated, :class:`pgqueue._errors.ConfigurationError` when the DSN
        reaches a standby or a read-only session (or its listen DSN a transaction pooler),
        and :class:`pgqueue._errors.ConnectionFailed` when the database cannot be reached at
        start-up.
        """
        with _db.connect(self.dsn, application_name="pgqueue-worker") as conn:
            check_schema(conn, self.schema, self.dsn)
            require_writable(conn, self.store, self.dsn)
            listen_on = listen_target(self.dsn, self.listen_dsn, f"worker {self.id}")
            # last: a worker refused above is never registered
            self._services.heartbeat.register(conn)
        logger.info(
            "worker %s started: queues %s, jobs %s, backlog %d",
            self.id,
            ",".join(self.queues),
            ",".join(self.registry),
            self.backlog,
        )
        self._services.start(self.dsn, listen_on)
        try:
            self._claimer.run()  # on this thread, until stopped, max_tasks or burst
            self._shutdown.drain(self._services)
        finally:
            self.given_back = self._shutdown.shut_down(self._services, self.id, self.lease)
            self.client.close()
        logger.info("worker %s stopped after %d tasks", self.id, self.processed)
        return self.exit_code

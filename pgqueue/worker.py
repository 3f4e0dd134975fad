"""The worker runner: claims tasks, runs them, records how they ended.

One worker process is made of a few small parts, each on its own thread:

* the **claimer** (the thread calling :meth:`Worker.run`): claims up to its free slots with
  ``SELECT ... FOR UPDATE SKIP LOCKED`` when woken, revokes expired tasks (the sweep), and
  sleeps until a notification, a freed slot, the next delayed task or ``poll_timeout``;
* the **listener**: LISTENs on ``<queue>_task_queued`` and wakes the claimer;
* the **executor**: a thread pool of ``backlog`` threads for ``def`` jobs and one event loop
  thread for ``async def`` jobs;
* the **completer** (:mod:`pgqueue.completer`): writes finished tasks in batches, one
  statement per batch, fenced on the attempt. A slot frees when its job returns, so claiming
  the next tasks overlaps writing the last outcomes; at most ``backlog`` returned tasks wait
  for that write, and a task counts as done (logs, ``wait_for_task``, shutdown,
  ``max_tasks`` exit) only once it has committed;
* the **heartbeat** (:mod:`pgqueue.heartbeat`): refreshes the worker's row every
  ``lease/4`` seconds on its own connection, so a busy claimer or a job holding the GIL in
  bursts cannot starve it; it also picks up revoke requests for running tasks that a missed
  notification did not deliver.

The claimer also rescues the tasks of lost workers every ``lease/4`` seconds
(:mod:`pgqueue.rescuer`). On :meth:`Worker.stop` (SIGTERM/SIGINT) it stops claiming, lets
running tasks finish for up to ``shutdown_timeout`` seconds, then gives back the unfinished
ones (QUEUED, or RETRY after an earlier failed attempt) with their attempt handed back; a second
stop gives back at once.

Connections per worker process: 2 (one each for the claimer and the completer) + 1 (listener)
+ 1 (heartbeat), plus the pool of the :class:`TaskBackend` that jobs use through
``consumer.backend`` (opened only if a job uses it; at most 2). So at most 6; 7 with
``schedule_periodic``, whose **scheduler** (:mod:`pgqueue.scheduler`) queues periodic jobs'
ticks on its own connection; one more with ``prune_after``, whose **pruner**
(:mod:`pgqueue.pruner`) deletes old finished tasks in small batches on its own connection,
apart from the claim path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from . import _db, states, tracing
from ._sql import Statements
from ._values import check_queue, dump_json
from .backend import TaskBackend
from .completer import Completer, Outcome
from .consumer import TaskConsumer
from .errors import ConfigurationError, first_line
from .heartbeat import Heartbeat
from .jobs import Job, JobRegistry
from .listener import Listener
from .pruner import Pruner
from .rescuer import rescue_lost_tasks
from .retry import DEFAULT_BACKOFF, ExponentialBackoff, Revoked, TimeLimitExceeded, decide
from .scheduler import Scheduler
from .schema import check_schema
from .supervisor import EXIT_REPLACE
from .task import Task, nice_task_message, task_row

if TYPE_CHECKING:
    from .metrics import WorkerMetrics

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]

#: Most expired tasks revoked by one sweep statement.
SWEEP_BATCH = 1000
#: Seconds past its time limit after which a thread job is killed with its process
#: (``hard_time_limits``); a job calling ``consumer.check()`` has stopped by then.
HARD_LIMIT_GRACE = 1.0
#: The event on which a running task's worker is told it was revoked: ``<queue>_task_revoke``.
REVOKE_EVENT = "task_revoke"


def worker_identity() -> str:
    """``host:pid:random``: unique to this process start, even when a pid is reused."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
        them back.
    :param rescue_backoff: delay before the next attempt of a task rescued from a lost worker.
    :param hard_time_limits: for worker processes under the supervisor (``--processes``): a
        thread job still running ``HARD_LIMIT_GRACE`` seconds past its ``time_limit`` ends
        RETRY/FAILURE (``TimeLimitExceeded``) at once; the worker stops as on SIGTERM and
        :meth:`run` returns ``EXIT_REPLACE`` (75), so the process exits, killing the thread,
        and the supervisor starts a new one.
    :param schema: the schema of pgqueue's tables.
    :param schedule_periodic: also run a scheduler that queues the periodic jobs of the
        registry at their ticks (pulsar's ``--schedule-periodic``); any number of workers may.
    :param prune_after: also run a pruner that deletes tasks finished more than this many
        seconds ago, in batches, every minute (:class:`pgqueue.pruner.Pruner`); None: never.
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
    ) -> None:
        if backlog < 1:
            raise ConfigurationError("backlog must be at least 1")
        if poll_timeout <= 0 or lease <= 0:
            raise ConfigurationError("poll_timeout and lease must be positive seconds")
        self.dsn = _db.resolve_dsn(dsn)
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
        self._killed: set[str] = set()
        self.given_back = 0
        self.id = worker_identity()
        self.sql = Statements(self.schema)
        self.registry = registry if registry is not None else JobRegistry.load(task_paths)
        if not len(self.registry):
            raise ConfigurationError(
                f"no jobs in task paths {', '.join(task_paths) or '(none)'}: a worker without "
                "jobs could never claim a task. Name the modules that define your jobs."
            )
        self.client = TaskBackend(self.dsn, name=name, registry=self.registry, schema=self.schema)
        self.processed = 0
        self._in_flight: dict[str, Task] = {}
        self._running: dict[str, tuple[TaskConsumer, concurrent.futures.Future[Any]]] = {}
        self._busy: set[concurrent.futures.Future[Any]] = set()  # jobs not returned yet
        self._abort = threading.Event()
        self._stop_deadline: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._completer: Completer | None = None
        self._heartbeat: Heartbeat | None = None
        #: The claimer's connection (one generic plan per statement, see
        #: :func:`claim_session`) and the completer's.
        self._claim_pool: ConnectionPool[Connection] | None = None
        self._finish_pool: ConnectionPool[Connection] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None
        #: Prometheus metrics (pgqueue-worker --metrics-port); None: not measured.
        self.metrics: WorkerMetrics | None = None
        self._scheduler = (
            Scheduler(self.dsn, self.registry, schema=self.schema, client=self.client)
            if schedule_periodic
            else None
        )
        self._pruner = (
            Pruner(self.dsn, self.schema, prune_after) if prune_after is not None else None
        )

    def __repr__(self) -> str:
        return f"<Worker {self.id} queues={','.join(self.queues)}>"

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once the running tasks have finished, or after
        ``shutdown_timeout`` seconds having given back those that did not. A second call gives
        them back at once (the second Ctrl-C)."""
        if self._stopping.is_set():
            logger.warning("stopping at once: giving back %d running tasks", self.in_flight)
            self._abort.set()
        else:
            logger.info(
                "stopping: no more claims; waiting up to %.1fs for %d running tasks",
                self.shutdown_timeout,
                self.in_flight,
            )
            self._stop_deadline = time.monotonic() + self.shutdown_timeout
            self._stopping.set()
        self._wake.set()

    @property
    def listener_reconnects(self) -> int:
        """How many times the listener's connection was lost and re-established."""
        return self._listener.reconnects if self._listener is not None else 0

    @property
    def jobs_still_running(self) -> int:
        """How many job threads are still running, e.g. those given back at shutdown (a
        thread cannot be killed: the ``pgqueue-worker`` process exits without waiting)."""
        with self._lock:
            return len(self._busy)

    @property
    def in_flight(self) -> int:
        """How many tasks are claimed and not yet recorded as finished."""
        with self._lock:
            return len(self._in_flight)

    def run(self) -> int:
        """Run until stopped, ``max_tasks`` reached or (``burst``) the queue is empty.

        Returns the exit status: 0, or ``EXIT_REPLACE`` after killing an overrunning job
        (``hard_time_limits``). Raises :class:`pgqueue.errors.SchemaError` when the schema
        is missing or outdated and :class:`pgqueue.errors.ConnectionFailed` when the database
        cannot be reached at start-up.
        """
        with _db.connect(self.dsn, application_name="pgqueue-worker") as conn:
            check_schema(conn, self.schema, self.dsn)
            conn.execute(self.sql.register_worker, self._registration())
        logger.info(
            "worker %s started: queues %s, jobs %s, backlog %d",
            self.id,
            ",".join(self.queues),
            ",".join(self.registry),
            self.backlog,
        )
        self._start_parts()
        try:
            self._claim_loop()
            self._drain()
        finally:
            self._stop_parts()
        logger.info("worker %s stopped after %d tasks", self.id, self.processed)
        return self.exit_code

    def _registration(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.queues,
            "backlog": self.backlog,
            "lease": self.lease,
        }

    def _start_parts(self) -> None:
        self._claim_pool = _one_connection(self.dsn, "pgqueue-worker", claim_session)
        self._finish_pool = _one_connection(self.dsn, "pgqueue-worker", _db.configure)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.backlog, thread_name_prefix="pgqueue-job"
        )
        self._listener = Listener(
            self.dsn,
            [
                self.client.channel(e, q)
                for q in self.queues
                for e in ("task_queued", "task_revoke")
            ],
            on_notify=self._on_notify,
            on_reconnect=self._wake.set,
            application_name="pgqueue-worker-listener",
        )
        self._listener.start()
        if self._scheduler is not None:
            self._scheduler.start()
        if self._pruner is not None:
            self._pruner.start()
        self._completer = Completer(
            self._finish_pool, self.sql, self.id, self._written, self._abort
        )
        self._completer.start()
        self._heartbeat = Heartbeat(
            self.dsn,
            self.sql,
            self.id,
            self.lease / 4,
            self._registration(),
            on_revoked=self._revoke_running,
            on_stopped=self._stopped_elsewhere,
        )
        self._heartbeat.start()

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel.endswith(REVOKE_EVENT):
            self._revoke_running(payload)
        else:
            self._wake.set()

    def _stop_parts(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._pruner is not None:
            self._pruner.stop()
        if self._completer is not None:
            self._completer.stop()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self._abort.set()  # a completer still retrying gives up: the lease covers its tasks
        if self._completer is not None:
            self._completer.write_late()  # jobs that returned meanwhile are not given back
        self._give_back()
        if self._listener is not None:
            self._listener.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        try:
            with _db.connect(self.dsn, application_name="pgqueue-worker") as conn:
                conn.execute(self.sql.stop_worker, {"id": self.id})
        except Exception as exc:  # the database may be gone; the lease covers it
            logger.warning("could not mark worker %s stopped: %s", self.id, exc)
        for pool in (self._claim_pool, self._finish_pool):
            if pool is not None:
                pool.close()
        self.client.close()

    # -- the claimer -----------------------------------------------------------------------

    def _claim_loop(self) -> None:
        next_sweep = next_rescue = 0.0
        backoff = 0.5
        while not self._stopping.is_set():
            self._wake.clear()
            sleep = self.poll_timeout
            try:
                if time.monotonic() >= next_rescue:
                    self._rescue()
                    next_rescue = time.monotonic() + self.lease / 4
                sleep = min(sleep, next_rescue - time.monotonic())
                if self.hard_time_limits:
                    sleep = min(sleep, self._kill_overruns())
                if time.monotonic() >= next_sweep:
                    self._sweep()
                    next_sweep = time.monotonic() + self.poll_timeout
                wanted = self._free_slots()
                claimed = self._claim(wanted) if wanted else 0
                if self.max_tasks and self.processed >= self.max_tasks:
                    logger.info("processed %d tasks (max_tasks); exiting", self.processed)
                    return
                if wanted and claimed == wanted:
                    continue  # there may be more
                if self.burst and not claimed and not self.in_flight:
                    logger.info("nothing left to claim (burst); exiting")
                    return
                if wanted:
                    sleep = min(sleep, self._seconds_to_next_due())
                backoff = 0.5
            except psycopg.OperationalError as exc:
                logger.warning(
                    "database unavailable (%s); retrying in %.1fs", first_line(exc), backoff
                )
                sleep, backoff = backoff, min(backoff * 2, 10.0)
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
                # dropped under a running worker (a re-migration?): wait for it to come back
                logger.error(
                    "pgqueue's tables are gone (%s): run `pgqueue migrate`; retrying in %.1fs",
                    first_line(exc),
                    backoff,
                )
                sleep, backoff = backoff, min(backoff * 2, 10.0)
            self._wake.wait(max(sleep, 0.005))

    def _free_slots(self) -> int:
        # A slot frees when its job returns, so the next claim overlaps the write of the
        # previous outcomes; at most `backlog` returned tasks wait for that write.
        free = min(self.backlog - self.jobs_still_running, 2 * self.backlog - self.in_flight)
        if self.max_tasks:
            free = min(free, self.max_tasks - self.processed)
        return max(free, 0)

    def _claim(self, limit: int) -> int:
        assert self._claim_pool is not None
        with self._claim_pool.connection() as conn, conn.cursor(row_factory=task_row) as cursor:
            tasks = cursor.execute(
                self.sql.claim_tasks,
                {
                    "queues": self.queues,
                    "jobs": list(self.registry),
                    "limit": limit,
                    "worker": self.id,
                },
            ).fetchall()
        if self.metrics is not None:
            self.metrics.claimed(tasks)
        started = 0
        provider_set = tracing.configured()
        for task in tasks:
            if task.status != states.STARTED:  # expired, or attempts at its limit
                logger.info("%s (%s)", nice_task_message(task), task.error)
                continue
            started += 1
            self.processed += 1
            with self._lock:
                self._in_flight[task.id] = task
            try:
                self._submit(task, provider_set)
            except Exception as exc:  # a row the job cannot be called with (SQL-made kwargs)
                logger.error("%s could not start: %s", task.info(), first_line(exc))
                self._finished(_not_started(task, exc))
        return started

    def _seconds_to_next_due(self) -> float:
        assert self._claim_pool is not None
        with self._claim_pool.connection() as conn:
            row = conn.execute(self.sql.next_run_at, {"queues": self.queues}).fetchone()
        seconds = row["seconds"] if row else None
        return self.poll_timeout if seconds is None else max(seconds, 0.0)

    def _sweep(self) -> None:
        assert self._claim_pool is not None
        with self._claim_pool.connection() as conn:
            rows = conn.execute(
                self.sql.revoke_expired, {"queues": self.queues, "limit": SWEEP_BATCH}
            ).fetchall()
        if rows:
            logger.info("revoked %d expired tasks", len(rows))

    def _kill_overruns(self) -> float:
        """Fail thread jobs past time_limit + HARD_LIMIT_GRACE and stop so that the process
        (and their threads) is replaced; return the seconds until the next check is due."""
        now = time.monotonic()
        next_check = self.poll_timeout
        overrun: list[TaskConsumer] = []
        with self._lock:
            for consumer, future in self._running.values():
                if consumer.deadline is None or future.done() or consumer.job.is_async:
                    continue
                due = consumer.deadline + HARD_LIMIT_GRACE
                if due <= now and consumer.task.id not in self._killed:
                    overrun.append(consumer)
                elif due > now:
                    next_check = min(next_check, due - now)
        for consumer in overrun:
            self._killed.add(consumer.task.id)
            limit = consumer.job.time_limit_seconds()
            logger.error(
                "%s still runs %.1fs past its time limit of %ss: failing it and replacing "
                "this worker process to kill its thread",
                consumer.task.info(),
                HARD_LIMIT_GRACE,
                limit,
            )
            self._finished(
                _failure(
                    consumer, TimeLimitExceeded(f"killed: ran past its time limit of {limit}s")
                )
            )
        if overrun and not self._stopping.is_set():
            self.exit_code = EXIT_REPLACE
            self.stop()
        return next_check

    def _rescue(self) -> None:
        assert self._claim_pool is not None
        with self._claim_pool.connection() as conn:
            rescue_lost_tasks(conn, self.sql, self.rescue_backoff)

    def _drain(self) -> None:
        """Wait for running tasks: for ever after ``max_tasks``, until the shutdown deadline
        after :meth:`stop`, not at all after a second stop."""
        while self.in_flight and not self._abort.is_set():
            deadline = self._stop_deadline
            if deadline is not None and time.monotonic() >= deadline:
                logger.warning(
                    "shutdown timeout (%.1fs) passed with %d tasks running",
                    self.shutdown_timeout,
                    self.in_flight,
                )
                return
            self._wake.wait(0.2)
            self._wake.clear()

    def _give_back(self) -> None:
        """Hand unfinished tasks back to the queue without using up their attempt."""
        with self._lock:
            tasks = list(self._in_flight.values())
            self._in_flight.clear()
        if not tasks or self._finish_pool is None:
            return
        params = {
            "ids": [t.id for t in tasks],
            "attempts": [t.attempts for t in tasks],
            "worker": self.id,
        }
        try:
            with self._finish_pool.connection(timeout=5) as conn:
                rows = conn.execute(self.sql.give_back_tasks, params).fetchall()
        except Exception as exc:  # the database may be gone: the lease covers these tasks
            logger.warning(
                "could not give back %d unfinished tasks (%s); they will be rescued %.1fs "
                "after the last heartbeat",
                len(tasks),
                first_line(exc),
                self.lease,
            )
            return
        self.given_back = len(rows)
        for row in rows:
            logger.warning(
                "gave back unfinished task.%s(%s) at shutdown: now %s, attempt not counted",
                row["name"],
                row["id"],
                states.status_string(row["status"]),
            )

    # -- the executor ----------------------------------------------------------------------

    def _submit(self, task: Task, provider_set: bool) -> None:
        job = self.registry[task.name]
        consumer = TaskConsumer(self.client, self.id, task, job)
        if logger.isEnabledFor(logging.INFO):  # the message costs more than a no-op job
            logger.info(nice_task_message(task))
        future: concurrent.futures.Future[Any]
        if job.is_async:
            future = asyncio.run_coroutine_threadsafe(
                tracing.traced_coroutine(task, _run_async(job, consumer, task.kwargs)),
                self._event_loop(),
            )
        else:
            assert self._executor is not None
            future = self._executor.submit(
                tracing.traced(task, job, provider_set), consumer, **task.kwargs
            )
        with self._lock:
            self._running[task.id] = (consumer, future)
            self._busy.add(future)
        future.add_done_callback(lambda f: self._job_done(consumer, f))

    def _job_done(self, consumer: TaskConsumer, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._busy.discard(future)
        try:
            outcome = _outcome(consumer, future)
        except Exception as exc:  # a callback's error is swallowed: the task would stay STARTED
            why = "its outcome could not be computed"
            logger.error("%s: %s: %s", consumer.task.info(), why, first_line(exc))
            outcome = _not_started(consumer.task, exc, why)
        self._finished(outcome)
        self._wake.set()  # a slot is free

    def _finished(self, outcome: Outcome) -> None:
        assert self._completer is not None
        self._completer.put(outcome)

    def _revoke_running(self, task_id: str) -> None:
        """Tell a running task it was revoked: ``consumer.is_revoked()`` turns True and an
        ``async`` job is cancelled. The task ends REVOKED when the job returns."""
        with self._lock:
            running = self._running.get(task_id)
        if running is None or running[0].revoked:
            return
        consumer, future = running
        consumer.revoked = True
        logger.info("%s revoked while running: asking it to stop", consumer.task.info())
        if consumer.job.is_async:
            future.cancel()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="pgqueue-async-jobs", daemon=True
            )
            thread.start()
            self._loop = loop
        return self._loop

    # -- after the completer wrote ----------------------------------------------------------

    def _written(self, batch: list[Outcome], written: Mapping[str, datetime | None]) -> None:
        """The completer committed ``batch``: count, log and forget its tasks."""
        if self.metrics is not None:
            self.metrics.finished(batch, written)
        verbose = logger.isEnabledFor(logging.INFO)
        for outcome in batch:
            if outcome.task.id in written:
                if verbose:
                    ended = replace(
                        outcome.task, status=outcome.status, time_ended=written[outcome.task.id]
                    )
                    error = f": {outcome.error}" if outcome.error else ""
                    logger.info(nice_task_message(ended) + error)
            else:
                logger.warning(
                    "%s: outcome %s not recorded, the task was changed by someone else "
                    "(revoked or rescued) meanwhile",
                    outcome.task.info(),
                    states.status_string(outcome.status),
                )
        with self._lock:
            for outcome in batch:
                self._in_flight.pop(outcome.task.id, None)
                self._running.pop(outcome.task.id, None)
        self._wake.set()

    def _stopped_elsewhere(self) -> None:
        """The heartbeat found this worker's row marked stopped by someone else: its tasks
        are being rescued, so it must not claim more."""
        if not self._stopping.is_set():
            logger.error("worker %s was marked stopped by someone else; stopping", self.id)
            self.stop()


def claim_session(conn: Connection) -> None:
    """Set up the claimer's connection: its prepared statements keep one generic plan
    (``plan_cache_mode = force_generic_plan``), so a claim is planned once, not on every
    execution (~0.2 ms of each claim otherwise). The claim's plan walks the partial index
    task_claimable and reads the picked rows by primary key whatever its parameters (see
    ``CLAIM_TASKS``). Claims commit durably, like everything pgqueue writes: a claim a
    server crash forgot could run its task a second time beside the first.
    """
    _db.configure(conn)
    conn.execute("SET plan_cache_mode = force_generic_plan")


def _one_connection(
    dsn: str, application_name: str, configure: Callable[[Connection], None]
) -> ConnectionPool[Connection]:
    """A pool of exactly one autocommit connection for one thread of the worker; it replaces
    the connection when a statement finds it broken. No check on checkout: a broken
    connection fails its statement instead (``OperationalError``: the claimer and the
    completer retry)."""
    return ConnectionPool(
        _db.conninfo(dsn, application_name),
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True, "row_factory": dict_row},
        configure=configure,
        name=application_name,
        num_workers=1,
        open=True,
    )


async def _run_async(job: Job, consumer: TaskConsumer, kwargs: dict[str, Any]) -> Any:
    """Run an ``async`` job, cancelling it at its ``time_limit``."""
    limit = job.time_limit_seconds()
    if limit is None:
        return await job(consumer, **kwargs)
    running = asyncio.ensure_future(job(consumer, **kwargs))
    done, _ = await asyncio.wait({running}, timeout=limit)
    if not done:
        running.cancel()
        await asyncio.wait({running})
        raise TimeLimitExceeded(f"{consumer.task.info()} cancelled at its time limit of {limit}s")
    return running.result()


def _outcome(consumer: TaskConsumer, future: concurrent.futures.Future[Any]) -> Outcome:
    """Turn a finished job future into the outcome to record (see :mod:`pgqueue.retry`)."""
    task, job = consumer.task, consumer.job
    if consumer.revoked:
        return Outcome(task, states.REVOKED, error="revoked while running")
    exc = future.exception() if not future.cancelled() else asyncio.CancelledError()
    if exc is None:
        try:
            return Outcome(
                task, states.SUCCESS, dump_json(future.result(), f"the result of job {job.name!r}")
            )
        except Exception as encode_error:
            exc = encode_error
    if isinstance(exc, Revoked):
        return Outcome(task, states.REVOKED, error=str(exc))
    return _failure(consumer, exc)


def _failure(consumer: TaskConsumer, exc: BaseException) -> Outcome:
    """RETRY or FAILURE for an attempt that raised ``exc`` (see :mod:`pgqueue.retry`)."""
    task, job = consumer.task, consumer.job
    decision = decide(
        exc,
        attempt=task.attempts,
        max_retries=task.max_retries,
        retry_on=job.retry_on,
        backoff=job.backoff,
    )
    return Outcome(
        task,
        states.FAILURE if decision.delay is None else states.RETRY,
        error=decision.error,
        traceback="".join(traceback.format_exception(exc)),
        delay=decision.delay,
    )


def _not_started(task: Task, exc: Exception, why: str = "could not start") -> Outcome:
    """FAILURE for a task whose job could not even be called, e.g. kwargs that are a JSON
    array written by plain SQL: retrying could not help, and the rest of its claim runs on.
    Also for a task whose outcome could not be computed (``why``; a job's backoff that
    raised, say): one task's data ends that task, never the worker (F24)."""
    return Outcome(
        task,
        states.FAILURE,
        error=f"{why}: {type(exc).__name__}: {exc}",
        traceback="".join(traceback.format_exception(exc)),
    )

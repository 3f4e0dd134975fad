"""The worker runner: claims tasks, runs them, records how they ended.

One worker process is made of a few small parts, each on its own thread:

* the **claimer** (the thread calling :meth:`Worker.run`): claims up to its free slots with
  ``SELECT ... FOR UPDATE SKIP LOCKED`` when woken, revokes expired tasks (the sweep), and
  sleeps until a notification, a freed slot, the next delayed task or ``poll_timeout``;
* the **listener**: LISTENs on ``<queue>_task_queued`` and wakes the claimer;
* the **executor**: a thread pool of ``backlog`` threads for ``def`` jobs and one event loop
  thread for ``async def`` jobs;
* the **completer**: writes finished tasks in batches, one statement per batch, fenced on the
  attempt; a slot is freed only once its task's outcome has committed;
* the **heartbeat**: refreshes the worker's row every ``lease/4`` seconds on its own
  connection, so a busy claimer or a job holding the GIL in bursts cannot starve it.

Connections per worker process: 2 (claimer and completer pool) + 1 (listener) + 1 (heartbeat),
plus the pool of the :class:`TaskBackend` that jobs use through ``consumer.backend``
(opened only if a job uses it; at most 2). So at most 6.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from . import _db, states
from ._sql import Statements
from ._values import dump_json
from .backend import TaskBackend
from .consumer import TaskConsumer
from .jobs import Job, JobRegistry
from .listener import Listener
from .schema import check_schema
from .task import Task, nice_task_message

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]

#: Most outcomes written by one finish statement.
FINISH_BATCH = 500
#: Most expired tasks revoked by one sweep statement.
SWEEP_BATCH = 1000


@dataclass(frozen=True)
class Outcome:
    """How one execution ended, waiting to be written by the completer."""

    task: Task
    status: int
    result: str | None = None
    error: str | None = None
    traceback: str | None = None
    delay: float | None = None


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
    :param lease: seconds after the last heartbeat after which this worker counts as lost.
    :param schema: the schema of pgqueue's tables.
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
        schema: str | None = None,
        registry: JobRegistry | None = None,
    ) -> None:
        if backlog < 1:
            raise ValueError("backlog must be at least 1")
        if poll_timeout <= 0 or lease <= 0:
            raise ValueError("poll_timeout and lease must be positive seconds")
        self.dsn = _db.resolve_dsn(dsn)
        self.schema = _db.resolve_schema(schema)
        self.name = name
        self.queues = list(queues or [name])
        self.backlog = backlog
        self.max_tasks = max_tasks
        self.poll_timeout = poll_timeout
        self.burst = burst
        self.lease = lease
        self.id = worker_identity()
        self.sql = Statements(self.schema)
        self.registry = registry if registry is not None else JobRegistry.load(task_paths)
        self.client = TaskBackend(self.dsn, name=name, registry=self.registry, schema=self.schema)
        self.processed = 0
        self._in_flight: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._outcomes: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        self._pool: ConnectionPool[Connection] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"<Worker {self.id} queues={','.join(self.queues)}>"

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once the running tasks have finished."""
        self._stopping.set()
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """How many tasks are claimed and not yet recorded as finished."""
        with self._lock:
            return len(self._in_flight)

    def run(self) -> int:
        """Run until stopped, ``max_tasks`` reached or (``burst``) the queue is empty.

        Returns the exit status (0). Raises :class:`pgqueue.errors.SchemaError` when the schema
        is missing or outdated and :class:`pgqueue.errors.ConnectionFailed` when the database
        cannot be reached at start-up.
        """
        with _db.connect(self.dsn, application_name="pgqueue-worker") as conn:
            check_schema(conn, self.schema, self.dsn)
            conn.execute(
                self.sql.register_worker,
                {
                    "id": self.id,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "queues": self.queues,
                    "backlog": self.backlog,
                    "lease": self.lease,
                },
            )
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
        return 0

    def _start_parts(self) -> None:
        self._pool = ConnectionPool(
            _db.conninfo(self.dsn, "pgqueue-worker"),
            min_size=2,
            max_size=2,
            kwargs={"autocommit": True, "row_factory": dict_row},
            check=ConnectionPool.check_connection,
            name="pgqueue-worker",
            open=True,
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.backlog, thread_name_prefix="pgqueue-job"
        )
        self._listener = Listener(
            self.dsn,
            [self.client.channel("task_queued", q) for q in self.queues],
            on_notify=lambda _channel, _payload: self._wake.set(),
            on_reconnect=self._wake.set,
            application_name="pgqueue-worker-listener",
        )
        self._listener.start()
        for target, label in (
            (self._complete_loop, "completer"),
            (self._heartbeat_loop, "heartbeat"),
        ):
            thread = threading.Thread(target=target, name=f"pgqueue-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _stop_parts(self) -> None:
        self._done.set()
        self._outcomes.put(None)
        for thread in self._threads:
            thread.join(10)
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
        if self._pool is not None:
            self._pool.close()
        self.client.close()

    # -- the claimer -----------------------------------------------------------------------

    def _claim_loop(self) -> None:
        next_sweep = 0.0
        backoff = 0.5
        while not self._stopping.is_set():
            self._wake.clear()
            sleep = self.poll_timeout
            try:
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
                    "database unavailable (%s); retrying in %.1fs", _first_line(exc), backoff
                )
                sleep, backoff = backoff, min(backoff * 2, 10.0)
            self._wake.wait(max(sleep, 0.005))

    def _free_slots(self) -> int:
        free = self.backlog - self.in_flight
        if self.max_tasks:
            free = min(free, self.max_tasks - self.processed)
        return max(free, 0)

    def _claim(self, limit: int) -> int:
        assert self._pool is not None
        with self._pool.connection() as conn:
            rows = conn.execute(
                self.sql.claim_tasks,
                {
                    "queues": self.queues,
                    "jobs": list(self.registry),
                    "limit": limit,
                    "worker": self.id,
                },
            ).fetchall()
        started = 0
        for row in rows:
            task = Task.from_row(row)
            if task.status == states.REVOKED:
                logger.info("%s (expired before it started)", nice_task_message(task))
                continue
            started += 1
            self.processed += 1
            with self._lock:
                self._in_flight[task.id] = task
            self._submit(task)
        return started

    def _seconds_to_next_due(self) -> float:
        assert self._pool is not None
        with self._pool.connection() as conn:
            row = conn.execute(self.sql.next_run_at, {"queues": self.queues}).fetchone()
        seconds = row["seconds"] if row else None
        return self.poll_timeout if seconds is None else max(seconds, 0.0)

    def _sweep(self) -> None:
        assert self._pool is not None
        with self._pool.connection() as conn:
            rows = conn.execute(
                self.sql.revoke_expired, {"queues": self.queues, "limit": SWEEP_BATCH}
            ).fetchall()
        if rows:
            logger.info("revoked %d expired tasks", len(rows))

    def _drain(self) -> None:
        while self.in_flight:
            self._wake.wait(0.5)
            self._wake.clear()

    # -- the executor ----------------------------------------------------------------------

    def _submit(self, task: Task) -> None:
        job = self.registry[task.name]
        consumer = TaskConsumer(self.client, self.id, task, job)
        logger.info(nice_task_message(task))
        future: concurrent.futures.Future[Any]
        if job.is_async:
            future = asyncio.run_coroutine_threadsafe(
                job(consumer, **task.kwargs), self._event_loop()
            )
        else:
            assert self._executor is not None
            future = self._executor.submit(job, consumer, **task.kwargs)
        future.add_done_callback(lambda f: self._outcomes.put(_outcome(task, job, f)))

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="pgqueue-async-jobs", daemon=True
            )
            thread.start()
            self._loop = loop
        return self._loop

    # -- the completer ---------------------------------------------------------------------

    def _complete_loop(self) -> None:
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
            self._write_outcomes(batch)

    def _write_outcomes(self, batch: list[Outcome]) -> None:
        assert self._pool is not None
        params = {
            "ids": [o.task.id for o in batch],
            "attempts": [o.task.attempts for o in batch],
            "statuses": [o.status for o in batch],
            "results": [o.result for o in batch],
            "errors": [o.error for o in batch],
            "tracebacks": [o.traceback for o in batch],
            "delays": [o.delay for o in batch],
            "worker": self.id,
        }
        backoff = 0.2
        while True:
            try:
                with self._pool.connection() as conn:
                    rows = conn.execute(self.sql.finish_tasks, params).fetchall()
                break
            except psycopg.OperationalError as exc:
                # The statement is fenced on (attempt, STARTED), so running it again after an
                # unknown outcome is harmless: it updates nothing the second time.
                logger.warning(
                    "could not record %d finished tasks (%s); retrying in %.1fs",
                    len(batch),
                    _first_line(exc),
                    backoff,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        written = {row["id"]: row["time_ended"] for row in rows}
        for outcome in batch:
            ended = written.get(outcome.task.id)
            if outcome.task.id in written:
                logger.info(
                    nice_task_message(
                        replace(outcome.task, status=outcome.status, time_ended=ended)
                    )
                    + (f": {outcome.error}" if outcome.error else "")
                )
            else:
                logger.warning(
                    "%s: outcome %s not recorded, the task was changed by someone else "
                    "(revoked or rescued) meanwhile",
                    outcome.task.info(),
                    states.status_string(outcome.status),
                )
            with self._lock:
                self._in_flight.pop(outcome.task.id, None)
        self._wake.set()

    # -- the heartbeat ---------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval = self.lease / 4
        conn: Connection | None = None
        while not self._done.wait(interval):
            try:
                if conn is None or conn.closed:
                    conn = _db.connect(self.dsn, application_name="pgqueue-heartbeat")
                conn.execute(self.sql.heartbeat_worker, {"id": self.id})
            except Exception as exc:
                logger.warning("heartbeat failed: %s", _first_line(exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def _outcome(task: Task, job: Job, future: concurrent.futures.Future[Any]) -> Outcome:
    """Turn a finished job future into the outcome to record."""
    exc = future.exception() if not future.cancelled() else asyncio.CancelledError()
    if exc is None:
        try:
            return Outcome(
                task, states.SUCCESS, dump_json(future.result(), f"the result of job {job.name!r}")
            )
        except Exception as encode_error:
            exc = encode_error
    return Outcome(
        task,
        states.FAILURE,
        error=f"{type(exc).__name__}: {exc}",
        traceback="".join(traceback.format_exception(exc)),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""The executor: runs claimed tasks and says how each ended.

``def`` jobs run on a pool of ``backlog`` threads, ``async def`` jobs on one event loop
thread (made on first use). The executor keeps the worker's ledger: every task claimed and
not yet written (:attr:`Executor.in_flight`), the running executions with their
:class:`~pgqueue._consumer.TaskConsumer` (through which it tells a job it was revoked), and
the job threads that have not returned (:attr:`Executor.jobs_still_running`). A job's end
becomes an :class:`~pgqueue.worker.outcome.Outcome` handed to ``on_outcome`` on the job's
own thread, then ``on_slot_free`` is called: no extra thread hop on the way to the completer.

With ``hard_time_limits`` its loop is a watchdog (:meth:`Executor.run_once`): for a thread
job still running :data:`HARD_LIMIT_GRACE` seconds past its ``time_limit``, ``on_overrun`` is
called so that the owner replaces the process to kill the thread. Nothing is written for that
attempt while its thread can still run (F22): the task stays STARTED under this worker, is
neither given back nor written, and the rescue settles it (RETRY or FAILURE) once the process
has ended and its lease has run out.

When the worker learns that it lost its lease on executions it still runs (:meth:`lose`, F21),
each is told at once (``consumer.check()`` raises, ``is_revoked()`` is True, an async job is
cancelled) and whatever it ends with is dropped: the task is no longer this worker's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import _tracing as tracing
from .._backend import TaskBackend
from .._consumer import TaskConsumer
from .._errors import first_line
from .._jobs import Job, JobRegistry
from .._retry import TimeLimitExceeded
from .._service import Service
from .._task import Task, nice_task_message, task_log_fields
from .outcome import Outcome, not_started, outcome_of

logger = logging.getLogger("pgqueue.worker")

#: Seconds past its time limit after which a thread job is killed with its process
#: (``hard_time_limits``); a job calling ``consumer.check()`` has stopped by then.
HARD_LIMIT_GRACE = 1.0


#: One execution of a task: ``(task id, attempt)``.
Run = tuple[str, int]


def run_of(task: Task) -> Run:
    """The run a claimed ``task`` is: its id and the attempt it was claimed for."""
    return (task.id, task.attempts)


class Executor(Service):
    """Runs tasks for worker ``worker_id`` (see the module docstring).

    :param registry: the jobs; ``client`` is the backend jobs reach as ``consumer.backend``.
    :param backlog: the size of the thread pool.
    :param hard_time_limits: run the watchdog thread (see the module docstring); its round
        comes at most every ``poll_timeout`` seconds.
    :param on_outcome: told each outcome, on the thread where the job ended (never blocks).
    :param on_slot_free: told that a job returned (a slot is free), after its outcome.
    :param on_overrun: told after the watchdog failed overrunning jobs.
    """

    def __init__(
        self,
        registry: JobRegistry,
        client: TaskBackend,
        worker_id: str,
        backlog: int,
        *,
        hard_time_limits: bool,
        poll_timeout: float,
        on_outcome: Callable[[Outcome], None],
        on_slot_free: Callable[[], None],
        on_overrun: Callable[[], None],
    ) -> None:
        super().__init__("pgqueue-watchdog")
        self.registry = registry
        self.client = client
        self.worker_id = worker_id
        self.backlog = backlog
        self.hard_time_limits = hard_time_limits
        self.poll_timeout = poll_timeout
        self._on_outcome = on_outcome
        self._on_slot_free = on_slot_free
        self._on_overrun = on_overrun
        self._lock = threading.Lock()
        # The ledger is keyed by run, (task id, attempt): after a lease lost (F21) the same
        # worker may claim the task again while the first run still ends, and what the first
        # run ends with must not touch the second's entries.
        self._in_flight: dict[Run, Task] = {}
        self._running: dict[Run, tuple[TaskConsumer, concurrent.futures.Future[Any]]] = {}
        self._busy: set[concurrent.futures.Future[Any]] = set()  # jobs not returned yet
        self._killed: set[Run] = set()  # overran (hard limits): left for the rescue
        self._lost: set[Run] = set()  # no longer this worker's (lease lost): never written
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the ledger -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """How many tasks are claimed and not yet recorded as finished."""
        with self._lock:
            return len(self._in_flight)

    @property
    def running(self) -> int:
        """How many tasks in flight have a job still running (the others returned and wait
        for their outcome to be written)."""
        with self._lock:
            return sum(
                1
                for run, (_, future) in self._running.items()
                if run in self._in_flight and run not in self._killed and not future.done()
            )

    @property
    def jobs_still_running(self) -> int:
        """How many job threads have not returned."""
        with self._lock:
            return len(self._busy)

    def forget(self, outcomes: Iterable[Outcome]) -> None:
        """These outcomes were written (or fenced off): their runs are no longer in flight."""
        with self._lock:
            for outcome in outcomes:
                run = run_of(outcome.task)
                self._in_flight.pop(run, None)
                self._running.pop(run, None)

    @property
    def overran(self) -> int:
        """How many thread jobs the watchdog found past their hard limit (left STARTED)."""
        with self._lock:
            return len(self._killed)

    def claimed_ids(self) -> list[str]:
        """The ids of the tasks this worker holds: claimed and not yet recorded (running, or
        returned with an outcome to write), and those left to the rescue after overrunning.
        A STARTED task of this worker not among them is an orphan
        (:func:`pgqueue._rescuer.rescue_orphaned_tasks`)."""
        with self._lock:
            return list(dict.fromkeys(task_id for task_id, _ in (*self._in_flight, *self._killed)))

    def held(self) -> list[Run]:
        """The executions whose job is still running, as ``(task id, attempt)``: what the
        heartbeat checks this worker still owns."""
        with self._lock:
            return [
                run
                for run, (_, future) in self._running.items()
                if not future.done() and run not in self._lost
            ]

    def take_unfinished(self) -> list[Task]:
        """Empty the ledger at shutdown; return the tasks claimed and not yet written, except
        those whose thread overran its hard limit (they are left for the rescue, F22)."""
        with self._lock:
            tasks = [t for run, t in self._in_flight.items() if run not in self._killed]
            self._in_flight.clear()
        return tasks

    def lose(self, runs: Iterable[Run]) -> list[Task]:
        """These executions, ``(task id, attempt)``, are no longer this worker's (lease lost,
        F21): tell each at once (``check()`` raises ``Revoked``, an ``async`` job is
        cancelled), drop them from the ledger and drop whatever they end with. Another run of
        the same task (claimed again meanwhile) is left alone. Returns the tasks told (those
        still running)."""
        told: list[Task] = []
        with self._lock:
            for run in runs:
                running = self._running.get(run)
                if running is None or running[1].done() or run in self._lost:
                    continue
                consumer, future = running
                consumer.lease_lost = True
                self._lost.add(run)
                self._in_flight.pop(run, None)
                told.append(consumer.task)
                if consumer.job.is_async:
                    future.cancel()
        return told

    def lose_all(self) -> list[Task]:
        """:meth:`lose` every execution whose job still runs."""
        return self.lose(self.held())

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        """Make the thread pool; start the watchdog thread with ``hard_time_limits``."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.backlog, thread_name_prefix="pgqueue-job"
            )
        if self.hard_time_limits:
            super().start()
        else:
            self.started.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the watchdog; drop queued jobs and end the event loop (running job threads
        cannot be killed: they end with the process). Safe twice and before :meth:`start`."""
        super().stop(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    def submit(self, task: Task, provider_set: bool) -> None:
        """Start ``task`` (it counts as in flight until :meth:`forget`); a task whose job
        cannot even be called ends FAILURE through ``on_outcome``."""
        try:
            job = self.registry[task.name]
            consumer = TaskConsumer(self.client, self.worker_id, task, job)
            if logger.isEnabledFor(logging.DEBUG):  # INFO has the summary (worker.activity)
                logger.debug(nice_task_message(task), extra=task_log_fields(task))
            future: concurrent.futures.Future[Any]
            if job.is_async:
                future = asyncio.run_coroutine_threadsafe(
                    tracing.traced_coroutine(task, _run_async(job, consumer, task.kwargs)),
                    self._event_loop(),
                )
            else:
                assert self._pool is not None
                future = self._pool.submit(
                    tracing.traced(task, job, provider_set), consumer, **task.kwargs
                )
        except Exception as exc:  # a row the job cannot be called with (SQL-made kwargs)
            logger.error("%s could not start: %s", task.info(), first_line(exc))
            with self._lock:
                self._in_flight[run_of(task)] = task
            self._on_outcome(not_started(task, exc))
            return
        with self._lock:
            self._in_flight[run_of(task)] = task
            self._running[run_of(task)] = (consumer, future)
            self._busy.add(future)
        future.add_done_callback(lambda f: self._done(consumer, f))
        if self.hard_time_limits and consumer.deadline is not None:
            self.wake()  # the watchdog's next round may now be due sooner

    def _done(self, consumer: TaskConsumer, future: concurrent.futures.Future[Any]) -> None:
        run = run_of(consumer.task)
        with self._lock:
            self._busy.discard(future)
            dropped = run in self._lost or run in self._killed
            if dropped:
                self._running.pop(run, None)
                self._lost.discard(run)
        if dropped:  # not this worker's to write any more (lease lost, or overran)
            logger.warning(
                "%s ended after it stopped being this worker's: not recorded", consumer.task.info()
            )
            self._on_slot_free()
            return
        try:
            outcome = outcome_of(consumer, future)
        except Exception as exc:  # a callback's error is swallowed: the task would stay STARTED
            why = "its outcome could not be computed"
            logger.error("%s: %s: %s", consumer.task.info(), why, first_line(exc))
            outcome = not_started(consumer.task, exc, why)
        self._on_outcome(outcome)
        self._on_slot_free()

    def revoke(self, task_id: str) -> None:
        """Tell a running task it was revoked: ``consumer.is_revoked()`` turns True and an
        ``async`` job is cancelled. The task ends REVOKED when the job returns."""
        with self._lock:
            running = next(
                (
                    held
                    for run, held in self._running.items()
                    if run[0] == task_id and run not in self._lost and not held[1].done()
                ),
                None,
            )
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

    # -- the watchdog (hard_time_limits) ------------------------------------------------------

    def run_once(self) -> float:
        """Find thread jobs past time_limit + HARD_LIMIT_GRACE and call ``on_overrun`` (their
        tasks are left STARTED, nothing written); return the seconds until the next check."""
        now = time.monotonic()
        next_check = self.poll_timeout
        overrun: list[TaskConsumer] = []
        with self._lock:
            for consumer, future in self._running.values():
                if consumer.deadline is None or future.done() or consumer.job.is_async:
                    continue
                due = consumer.deadline + HARD_LIMIT_GRACE
                if due <= now and run_of(consumer.task) not in self._killed:
                    overrun.append(consumer)
                elif due > now:
                    next_check = min(next_check, due - now)
        for consumer in overrun:
            with self._lock:
                self._killed.add(run_of(consumer.task))
            logger.error(
                "%s still runs %.1fs past its time limit of %ss: replacing this worker "
                "process to kill its thread; the task stays STARTED until the process has "
                "ended, then the rescue retries or fails it",
                consumer.task.info(),
                HARD_LIMIT_GRACE,
                consumer.job.time_limit_seconds(),
            )
        if overrun:
            self._on_overrun()
        return max(next_check, 0.005)


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

"""The scheduler: queues the task of every periodic job's tick, exactly once.

Any number of schedulers (workers started with ``--schedule-periodic``) may run against one
database. Each tick of each job is queued by one of them, once:

1. the schedule row of a due job (``next_tick <= now()``, the *database* clock) is locked with
   ``FOR UPDATE SKIP LOCKED``: a scheduler never waits for another that handles the same tick;
2. :func:`pgqueue._periodic.plan_ticks` decides which due ticks run (missed-run policy);
3. ``next_tick`` is moved on by a compare-and-set (``WHERE next_tick = <the value read>``), the
   tick's task is inserted and the counters updated, all in **one transaction**: a scheduler
   that dies half-way commits nothing, and the tick is still due for the next one.

The schedule row, not the task table, remembers which ticks are done, so pruning finished
tasks never re-opens a tick. A host clock that is wrong changes nothing: due-ness is computed
from ``now()`` in SQL, and the scheduler only uses its own clock to measure how long to sleep.

Connections: one, opened on first use and re-opened after an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg

from . import _db
from ._bulk import Call
from ._enqueue import task_params
from ._errors import PgQueueError
from ._jobs import JobRegistry
from ._periodic import PeriodicJob, ScheduleDefinition, plan_ticks
from ._service import Service
from ._store import Store
from ._store.schedules import Definition, ScheduleRow, task_options

logger = logging.getLogger("pgqueue.scheduler")

Connection = psycopg.Connection[dict[str, Any]]

#: Shortest sleep between two rounds, so a tick another scheduler is committing right now is
#: not polled in a tight loop.
MIN_SLEEP = 0.05


@dataclass(frozen=True)
class TickResult:
    """What one scheduler did about one job's due ticks.

    * ``name``: the job; ``queued``: ``[(tick, task id), ...]`` of the tasks queued;
    * ``overlapped``: ticks not queued because the previous task still held the lock_id;
    * ``missed``: due ticks not run by the missed-run policy;
    * ``next_tick``: the job's next tick.
    """

    name: str
    queued: list[tuple[datetime, str]]
    overlapped: list[datetime]
    missed: int
    next_tick: datetime


class Scheduler(Service):
    """Queues the tasks of the periodic jobs in ``registry`` at their ticks (a :class:`Service`).

    :param dsn: the database; None reads ``$PGQUEUE_DSN``.
    :param registry: the jobs; those with ``type == "periodic"`` are scheduled.
    :param name: the default queue (the backend's name): ticks of jobs without a queue of
        their own go there, with the job's priority, expiry and lock_id.
    :param schema: the schema of pgqueue's tables.
    :param max_sleep: the longest sleep between two rounds (seconds), so a schedule another
        process redefined is noticed.

    Use :meth:`start`/:meth:`stop` to run it on a thread, or call :meth:`define` and
    :meth:`tick` yourself (both take ``now`` to drive the schedule with a controlled clock).
    """

    def __init__(
        self,
        dsn: str | None,
        registry: JobRegistry,
        *,
        name: str = "tasks",
        schema: str | None = None,
        max_sleep: float = 30.0,
    ) -> None:
        super().__init__("pgqueue-scheduler")
        self.dsn = _db.resolve_dsn(dsn)
        self.schema = _db.resolve_schema(schema)
        self.store = Store(self.schema)
        self.registry = registry
        self.queue = name
        self.jobs: dict[str, PeriodicJob] = {
            job_name: job
            for job_name, job in registry.filter_types("periodic")
            if isinstance(job, PeriodicJob)
        }
        self.max_sleep = max_sleep
        self._conn: Connection | None = None
        self._defined = False
        self._announced = False
        #: Ticks this scheduler queued as tasks, and ticks it skipped (missed-run policy or
        #: overlap), by job name, since it was made (read by the metrics).
        self.ticks_queued: Counter[str] = Counter()
        self.ticks_skipped: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<Scheduler {', '.join(self.jobs) or 'no periodic jobs'}>"

    # -- the schedule table ----------------------------------------------------------------

    def define(self, now: datetime | None = None) -> None:
        """Store each periodic job's schedule: insert it, or rewrite it when the job's
        definition changed (the last process to start wins). Changed timing restarts the
        ticks from the first one after ``now``; a changed policy keeps ``next_tick``. The
        parameters of a tick's task (queue, priority, lock, expiry, retries, limits) are
        stored with it (``task_options``), so an operator's trigger queues the same task
        without a scheduler (:meth:`pgqueue._ops.Operations.trigger_schedule`).

        :param now: the time to define at; None: the database's ``now()``.
        """
        conn = self._connection()
        for job_name, job in self.jobs.items():
            options = task_options(task_params(self.registry, self.queue, Call(job_name), {}))
            with conn.transaction():
                self._define_job(conn, job_name, job.definition(), now)
                self.store.set_task_options(name=job_name, options=options).run(conn)

    def _define_job(
        self, conn: Connection, job_name: str, wanted: ScheduleDefinition, now: datetime | None
    ) -> None:
        row = self.store.schedule_for_define(name=job_name).run(conn)
        db_now = self._now(conn, now)
        if row is None:
            anchor = None if wanted.cron else wanted.anchor or db_now
            first = wanted.schedule(anchor).next_after(db_now)
            self.store.define_schedule(
                _definition_params(job_name, wanted, anchor, first, now)
            ).run(conn)
            logger.info("periodic job %s defined; first tick %s", job_name, first)
            return
        stored = ScheduleDefinition.from_row(row)
        retimed = not wanted.same_timing(stored)
        anchor = None if wanted.cron else wanted.anchor or (db_now if retimed else stored.anchor)
        if replace(wanted, anchor=anchor) == stored:
            return
        restart = wanted.schedule(anchor).next_after(db_now) if retimed else None
        self.store.redefine_schedule(
            _definition_params(job_name, wanted, anchor, restart, now)
        ).run(conn)
        logger.info(
            "periodic job %s redefined%s",
            job_name,
            f"; next tick {restart}" if restart else " (missed-run policy only)",
        )

    def tick(self, now: datetime | None = None) -> list[TickResult]:
        """Queue the tasks of every due tick (one scheduler round); return what was done.

        Jobs that another scheduler is handling at this moment are left to it.

        :param now: the time to tick at; None: the database's ``now()``.
        """
        conn = self._connection()
        waits = self.store.schedule_waits(names=list(self.jobs), now=now).run(conn)
        results = []
        for row in waits:
            if row["wait"] > 0:
                break
            result = self._tick_job(conn, row["name"], now)
            if result is not None:
                results.append(result)
        return results

    def seconds_to_next_tick(self, now: datetime | None = None) -> float | None:
        """Seconds from ``now`` (the database's by default) to the next tick of any of this
        scheduler's jobs: <= 0 when one is due; None when there is no schedule yet."""
        waits = self.store.schedule_waits(names=list(self.jobs), now=now).run(self._connection())
        return float(waits[0]["wait"]) if waits else None

    def _tick_job(self, conn: Connection, job_name: str, now: datetime | None) -> TickResult | None:
        with conn.transaction():
            row = self.store.lock_due_schedule(name=job_name, now=now).run(conn)
            if row is None:
                return None  # not due any more, or another scheduler is handling it
            db_now = row["now"]
            result: TickResult | None = TickResult(job_name, [], [], 0, row["next_tick"])
            if row["next_tick"] <= db_now:
                result = self._due_ticks(conn, job_name, row)
            if result is None:
                return None  # another scheduler moved next_tick first
            if row["trigger_requested_at"] is not None:
                self._triggered(conn, job_name, row)
        self.ticks_queued[job_name] += len(result.queued)
        self.ticks_skipped[job_name] += result.missed + len(result.overlapped)
        _log(result, paused=row["paused_at"] is not None)
        return result

    def _due_ticks(self, conn: Connection, job_name: str, row: ScheduleRow) -> TickResult | None:
        """Advance the locked, due schedule ``row`` over its due ticks and queue those its
        missed-run policy runs; a paused schedule queues none (they count as skipped)."""
        definition = ScheduleDefinition.from_row(row)
        plan = plan_ticks(definition.schedule(), definition, row["next_tick"], row["now"])
        advanced = self.store.advance_schedule(
            name=job_name,
            seen=row["next_tick"],
            next_tick=plan.next_tick,
            last_tick=plan.last_tick,
            now=row["now"],
        ).run(conn)
        if not advanced:
            return None
        paused = row["paused_at"] is not None
        queued: list[tuple[datetime, str]] = []
        overlapped: list[datetime] = []
        for moment in [] if paused else plan.run:
            task_id = self._queue(conn, job_name, {"tick": moment.isoformat()})
            if task_id is None:
                overlapped.append(moment)
            else:
                queued.append((moment, task_id))
        skipped = plan.skipped + (len(plan.run) if paused else 0)
        self.store.record_ticks(
            name=job_name,
            queued=len(queued),
            skipped=skipped + len(overlapped),
            last_task=queued[-1][1] if queued else None,
            outcome="skipped (paused)" if paused else _outcome(plan.last_tick, queued, overlapped),
        ).run(conn)
        return TickResult(job_name, queued, overlapped, skipped, plan.next_tick)

    def _triggered(self, conn: Connection, job_name: str, row: ScheduleRow) -> None:
        """Serve an operator's "run now" of the locked ``row``: queue one task as a tick
        would (a job that cannot overlap is not queued while its last task is live), with
        ``meta_params`` naming the operator, and clear the request (all in the round's
        transaction). Counted in :attr:`ticks_queued`, not in the returned ticks."""
        moment: datetime = row["now"]
        meta = {
            "tick": moment.isoformat(),
            "triggered_by": row["trigger_requested_by"],
            "triggered_at": row["trigger_requested_at"].isoformat(),
        }
        task_id = self._queue(conn, job_name, meta)
        self.store.clear_trigger(name=job_name).run(conn)
        self.store.record_ticks(
            name=job_name,
            queued=0 if task_id is None else 1,
            skipped=0,
            last_task=task_id,
            outcome="triggered" if task_id else "trigger skipped (overlap)",
        ).run(conn)
        if task_id is None:
            logger.warning(
                "periodic job %s: run requested by %s not queued: its previous task is still "
                "live (can_overlap=False)",
                job_name,
                row["trigger_requested_by"],
            )
        else:
            logger.info(
                "periodic job %s: run requested by %s queued as task %s",
                job_name,
                row["trigger_requested_by"],
                task_id,
            )
            self.ticks_queued[job_name] += 1

    def _queue(self, conn: Connection, job_name: str, meta: dict[str, Any]) -> str | None:
        call = Call(job_name, meta_params=meta)
        params = task_params(self.registry, self.queue, call, {})
        return self.store.queue_task(params).run(conn)

    def _now(self, conn: Connection, now: datetime | None) -> datetime:
        return self.store.schedule_now(now=now).run(conn)

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = _db.connect(self.dsn, application_name="pgqueue-scheduler")
        return self._conn

    # -- running as a service --------------------------------------------------------------

    def run_once(self) -> float | None:
        """One round: define the schedules (first round), queue every due tick, and return
        the seconds until the next tick by the database clock (at least :data:`MIN_SLEEP`, at
        most ``max_sleep``); None when the registry has no periodic job. Errors are logged
        and retried with a backoff by :meth:`on_error`; none escapes :meth:`run`."""
        if not self.jobs:
            logger.info("scheduler: the registry has no periodic jobs; nothing to schedule")
            return None
        if not self._announced:
            logger.info("scheduler started for %s", ", ".join(self.jobs))
            self._announced = True
        if not self._defined:
            self.define()
            self._defined = True
        self.tick()
        wait = self.seconds_to_next_tick()
        self.succeeded()
        return max(self.max_sleep if wait is None else min(wait, self.max_sleep), MIN_SLEEP)

    def on_error(self, exc: Exception) -> float:
        """Log a failed round; close the connection after a database error; back off."""
        delay = self.backoff()
        if isinstance(exc, (psycopg.Error, PgQueueError)):
            logger.warning("scheduler: %s; retrying in %.1fs", exc, delay)
            self.close()
        else:
            logger.exception("scheduler round failed; retrying in %.1fs", delay)
        return max(delay, MIN_SLEEP)

    def close(self) -> None:
        """Close the scheduler's connection (a later round opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _definition_params(
    job_name: str,
    definition: ScheduleDefinition,
    anchor: datetime | None,
    next_tick: datetime | None,
    now: datetime | None,
) -> Definition:
    return {
        "name": job_name,
        "run_every": definition.run_every,
        "anchor": anchor,
        "cron": definition.cron,
        "timezone": definition.timezone,
        "missed": definition.missed,
        "backfill_limit": definition.backfill_limit,
        "misfire_grace": definition.misfire_grace,
        "next_tick": next_tick,
        "now": now,
    }


def _outcome(
    last_tick: datetime | None, queued: list[tuple[datetime, str]], overlapped: list[datetime]
) -> str:
    """What happened at the latest tick handled: the schedule's ``last_outcome``."""
    if queued and queued[-1][0] == last_tick:
        return "queued"
    if overlapped and overlapped[-1] == last_tick:
        return "skipped (overlap)"
    return "skipped (missed)"


def _log(result: TickResult, *, paused: bool = False) -> None:
    if paused and result.missed:
        logger.info(
            "periodic job %s: %d tick(s) skipped: the schedule is paused",
            result.name,
            result.missed,
        )
        return
    for moment, task_id in result.queued:
        logger.info("periodic job %s: tick %s queued as task %s", result.name, moment, task_id)
    for moment in result.overlapped:
        logger.info(
            "periodic job %s: tick %s skipped: its previous task is still live (can_overlap=False)",
            result.name,
            moment,
        )
    if result.missed:
        logger.warning(
            "periodic job %s: %d tick(s) skipped, missed while no scheduler ran",
            result.name,
            result.missed,
        )

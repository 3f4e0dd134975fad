"""How a :class:`~pgqueue.worker.Worker`'s services are built, connected to each other and
started: nothing connects before :meth:`Services.start`. The order of the start (and of the
stop, :mod:`pgqueue.worker.shutdown`) is part of the worker's contract."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from psycopg_pool import ConnectionPool

from .. import _db
from .._backend import TaskBackend
from .._jobs import JobRegistry
from .._listener import Listener
from .._pruner import Pruner
from .._retry import ExponentialBackoff
from .._scheduler import Scheduler
from .._service import Service
from .._store import Store
from .activity import ActivityLog
from .claimer import Claimer, claim_session
from .completer import Completer
from .events import WorkerEvents
from .executor import Executor
from .heartbeat import Heartbeat
from .listener import worker_listener
from .maintenance import Maintenance
from .outcome import Outcome
from .pools import Connection, one_connection, open_pools


class Settings(Protocol):
    """What the services are built from: the worker's checked options (a
    :class:`~pgqueue.worker.Worker` is one)."""

    dsn: str
    schema: str
    name: str
    id: str
    store: Store
    registry: JobRegistry
    client: TaskBackend
    events: WorkerEvents
    queues: list[str]
    queue_order: str
    backlog: int
    max_tasks: int
    burst: bool
    poll_timeout: float
    lease: float
    rescue_backoff: ExponentialBackoff
    hard_time_limits: bool


@dataclass
class Services:
    """The services of one worker process, wired; the optional scheduler and pruner are None
    when not asked for."""

    claim_pool: ConnectionPool[Connection]
    finish_pool: ConnectionPool[Connection]
    completer: Completer
    executor: Executor
    claimer: Claimer
    maintenance: Maintenance
    listener: Listener
    heartbeat: Heartbeat
    #: The INFO summary of the tasks that ended (started first, stopped last).
    activity: ActivityLog
    scheduler: Scheduler | None
    pruner: Pruner | None
    #: Optional services, started first and stopped first.
    extras: list[Service] = field(default_factory=list)

    def start(self, dsn: str, listen_on: str | None) -> None:
        """Open the pools and start the services; the listener on ``listen_on``, not at all
        when None. Maintenance runs one round (rescue and sweep) before the first claim."""
        open_pools(dsn, (self.claim_pool, self.finish_pool))
        self.activity.start()
        self.executor.start()
        if listen_on is not None:
            self.listener.dsn = listen_on
            self.listener.start()
            self.claimer.notified = True  # it may sleep until an enqueue notifies it
        for extra in self.extras:
            extra.start()
        self.maintenance.round()  # rescue and sweep before the first claim
        self.maintenance.start()
        self.completer.start()
        self.heartbeat.start()


def build_services(
    settings: Settings,
    *,
    schedule_periodic: bool,
    prune_after: float | None,
    log_summary_every: float,
    on_written: Callable[[list[Outcome], Mapping[str, datetime | None]], None],
    on_overrun: Callable[[], None],
    on_stopped: Callable[[], None],
    on_lost: Callable[[list[tuple[str, int]]], None],
) -> Services:
    """Build the services of a worker with ``settings`` and connect their reports: the
    completer's writes to ``on_written``, a hard-limit overrun to ``on_overrun``, the
    heartbeat's findings to ``on_stopped`` (row marked stopped elsewhere) and ``on_lost``
    (tasks no longer held); claims go to ``settings.events``, and written outcomes to the
    activity summary logged every ``log_summary_every`` seconds. Nothing connects yet."""
    s = settings
    activity = ActivityLog(log_summary_every)
    s.events.subscribe(activity)
    claim_pool = one_connection(s.dsn, "pgqueue-worker", claim_session)
    finish_pool = one_connection(s.dsn, "pgqueue-worker", _db.configure)
    completer = Completer(finish_pool, s.store, s.id, on_written)
    executor = Executor(
        s.registry,
        s.client,
        s.id,
        s.backlog,
        hard_time_limits=s.hard_time_limits,
        poll_timeout=s.poll_timeout,
        on_outcome=completer.put,
        on_slot_free=lambda: claimer.wake(),
        on_overrun=on_overrun,
    )
    claimer = Claimer(
        claim_pool,
        s.store,
        s.id,
        s.queues,
        list(s.registry),
        executor,
        backlog=s.backlog,
        max_tasks=s.max_tasks,
        burst=s.burst,
        poll_timeout=s.poll_timeout,
        on_claimed=s.events.claimed,
        fair=s.queue_order == "fair",
    )
    maintenance = Maintenance(
        claim_pool,
        s.store,
        s.queues,
        worker_id=s.id,
        rescue_every=s.lease / 4,
        sweep_every=s.poll_timeout,
        rescue_backoff=s.rescue_backoff,
        on_rescued=claimer.wake,
        claimed=executor.claimed_ids,
        orphan_after=s.lease,
    )
    heartbeat = Heartbeat(
        s.dsn,
        s.store,
        s.id,
        s.lease,
        s.queues,
        s.backlog,
        on_revoked=executor.revoke,
        on_stopped=on_stopped,
        held=executor.held,
        on_lost=on_lost,
    )
    scheduler = (
        Scheduler(s.dsn, s.registry, name=s.name, schema=s.schema) if schedule_periodic else None
    )
    pruner = Pruner(s.dsn, s.schema, prune_after) if prune_after is not None else None
    return Services(
        claim_pool=claim_pool,
        finish_pool=finish_pool,
        completer=completer,
        executor=executor,
        claimer=claimer,
        maintenance=maintenance,
        listener=worker_listener(s.dsn, s.queues, claimer.wake, executor.revoke),
        heartbeat=heartbeat,
        activity=activity,
        scheduler=scheduler,
        pruner=pruner,
        extras=[service for service in (scheduler, pruner) if service is not None],
    )

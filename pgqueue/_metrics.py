"""Prometheus metrics of a worker process (``pgqueue-worker --metrics-port N``).

Needs the ``metrics`` extra (``pip install 'pgqueue[metrics]'``, the official
``prometheus-client``). Every metric lives in the :class:`WorkerMetrics` object's own
registry, so several workers in one process never mix their numbers; each registry also holds
prometheus-client's standard ``process_*`` and ``python_*`` collectors. No ``*_created``
series are exported (:func:`prometheus_client.disable_created_metrics`, called on import).

The job's name is the label ``job_name``: a label named ``job`` would collide with the target
label Prometheus attaches to every scraped series and be renamed ``exported_job``.

Metrics (all times in seconds, measured on the database clock):

* ``pgqueue_tasks_started_total{queue,job_name}``: tasks this worker claimed and started.
* ``pgqueue_tasks_finished_total{queue,job_name,state}``: final outcomes this worker recorded
  (SUCCESS, FAILURE, REVOKED), including tasks revoked at claim for being expired.
* ``pgqueue_tasks_retried_total{queue,job_name}``: attempts that failed and were queued again
  (RETRY): the task is not finished.
* ``pgqueue_task_wait_seconds{queue,job_name}``: histogram of time_started - time_queued.
* ``pgqueue_task_run_seconds{queue,job_name}``: histogram of time_ended - time_started.
* ``pgqueue_claim_batch_size``: histogram of tasks returned by one claim statement.
* ``pgqueue_tasks_in_flight``: tasks claimed and not yet recorded as finished.
* ``pgqueue_listener_reconnects_total``: times the LISTEN connection was re-established.
* ``pgqueue_queue_depth{queue,state}``: per queue in the whole database, the tasks a worker
  could claim now (QUEUED and RETRY whose run_at has passed) and the STARTED ones; tasks
  delayed into the future are not depth.
* ``pgqueue_oldest_due_task_age_seconds{queue}``: now() - run_at of the claimable task that
  has been due longest (0 when none is due), for every queue with QUEUED or RETRY tasks: the
  workers' lag, the number to alert on.

The last two are read at scrape time on a short-lived connection; every worker reports the
same numbers: aggregate with ``max by (queue, state)`` / ``max by (queue)``. With a read DSN
(``--read-dsn``, a streaming standby) they are read there, and
``pgqueue_read_replica_lag_seconds`` says how far that standby is behind the primary (0 while
it has replayed all it received; NaN before it replayed anything).
* ``pgqueue_notify_queue_usage``: how full PostgreSQL's NOTIFY queue is (0..1), read with the
  depth; from 0.5 pgqueue stops notifying and workers rely on polling (F27).
* ``pgqueue_workers{state}``: workers registered in the database by state (alive, and the
  stopped and lost ones seen in the last hour), read with the depth.
* ``pgqueue_worker_info{worker,version,queues}``: 1, naming this worker, pgqueue's version and
  the queues it claims (comma-separated).
* ``pgqueue_scheduler_ticks_queued_total{job_name}`` and
  ``pgqueue_scheduler_ticks_skipped_total{job_name}``: ticks of periodic jobs this worker's
  scheduler queued as tasks, and skipped (missed-run policy, or the previous task still live);
  present with ``--schedule-periodic``.
* ``pgqueue_pruner_deleted_total``: finished tasks this worker's pruner deleted; present with
  ``--prune-after``.

Alert rules and a Grafana dashboard built on these series are in the repository's
``deploy/prometheus/alerts.yml`` and ``deploy/grafana/pgqueue.json``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import _db, states
from ._errors import ConfigurationError
from ._store import Store
from ._store.operator import DepthRow, LagRow, StateCountRow
from ._task import Task

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from ._pruner import Pruner
    from ._scheduler import Scheduler
    from .worker.events import WorkerEvents
    from .worker.outcome import Outcome

#: Seconds back the ``pgqueue_workers`` gauge counts stopped and lost workers.
RECENT_WORKERS = 3600.0

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `*_created` series

#: prometheus-client's standard collectors (process CPU, memory, file descriptors; Python
#: version and garbage collection), added to every worker's registry.
STANDARD_COLLECTORS: tuple[Collector, ...] = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)

#: Buckets of the wait and run histograms, in seconds: 5 ms to 1 hour.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
#: Buckets of the claim batch size histogram.
BATCH_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Measured(Protocol):
    """What the metrics read of a worker (a :class:`pgqueue.Worker` has it all)."""

    @property
    def id(self) -> str:
        """The worker's identity (its row in the worker table)."""

    @property
    def queues(self) -> list[str]:
        """The queues it claims from."""

    @property
    def scheduler(self) -> Scheduler | None:
        """Its scheduler of periodic jobs, if it runs one."""

    @property
    def pruner(self) -> Pruner | None:
        """Its pruner of finished tasks, if it runs one."""

    @property
    def dsn(self) -> str:
        """The worker's database, for the queue depth read at scrape time."""

    @property
    def schema(self) -> str:
        """The schema of pgqueue's tables."""

    @property
    def in_flight(self) -> int:
        """Tasks claimed and not yet recorded as finished."""

    @property
    def listener_reconnects(self) -> int:
        """Times the LISTEN connection was re-established."""

    @property
    def events(self) -> WorkerEvents:
        """Where the worker reports claims and written outcomes."""


class WorkerMetrics:
    """The Prometheus metrics of one :class:`pgqueue.Worker`.

    ``WorkerMetrics(worker)`` before :meth:`Worker.run` subscribes to ``worker.events``: the
    worker's claimer reports to :meth:`claimed` and its completer to :meth:`finished`.
    :meth:`serve` exposes them over HTTP.
    """

    def __init__(self, worker: Measured, read_dsn: str | None = None) -> None:
        self.registry = CollectorRegistry()
        for collector in STANDARD_COLLECTORS:
            self.registry.register(collector)
        labels = ["queue", "job_name"]
        self.started = Counter(
            "pgqueue_tasks_started",
            "Tasks this worker claimed and started",
            labels,
            registry=self.registry,
        )
        self.finished_total = Counter(
            "pgqueue_tasks_finished",
            "Final task outcomes this worker recorded (SUCCESS, FAILURE, REVOKED)",
            [*labels, "state"],
            registry=self.registry,
        )
        self.retried = Counter(
            "pgqueue_tasks_retried",
            "Attempts this worker recorded as failed and queued again (RETRY)",
            labels,
            registry=self.registry,
        )
        self.wait_seconds = Histogram(
            "pgqueue_task_wait_seconds",
            "time_started - time_queued of the tasks this worker started (database clock)",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "pgqueue_task_run_seconds",
            "time_ended - time_started of the tasks this worker finished (database clock)",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.claim_batch = Histogram(
            "pgqueue_claim_batch_size",
            "Tasks returned by one claim statement",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        in_flight = Gauge(
            "pgqueue_tasks_in_flight",
            "Tasks claimed and not yet recorded as finished",
            registry=self.registry,
        )
        in_flight.set_function(lambda: worker.in_flight)
        self.registry.register(_WorkerCollector(worker, read_dsn))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        worker.events.subscribe(self)

    def claimed(self, tasks: Sequence[Task]) -> None:
        """Record one claim: its batch size, and each task started (or revoked as expired)."""
        self.claim_batch.observe(len(tasks))
        for task in tasks:
            if task.status != states.STARTED:  # expired, or attempts at its limit
                self.finished_total.labels(
                    task.queue, task.name, states.status_string(task.status)
                ).inc()
                continue
            self.started.labels(task.queue, task.name).inc()
            if task.time_started is not None and task.time_queued is not None:
                waited = (task.time_started - task.time_queued).total_seconds()
                self.wait_seconds.labels(task.queue, task.name).observe(max(waited, 0.0))

    def finished(self, outcomes: Iterable[Outcome], written: Mapping[str, datetime | None]) -> None:
        """Record outcomes the completer wrote; ``written`` maps task id -> time_ended (None
        for RETRY, counted as retried, not finished). Outcomes missing from ``written`` were
        fenced off and are not counted."""
        for outcome in outcomes:
            task = outcome.task
            if task.id not in written:
                continue
            if outcome.status == states.RETRY:
                self.retried.labels(task.queue, task.name).inc()
                continue
            self.finished_total.labels(
                task.queue, task.name, states.status_string(outcome.status)
            ).inc()
            ended = written[task.id]
            if ended is not None and task.time_started is not None:
                ran = (ended - task.time_started).total_seconds()
                self.run_seconds.labels(task.queue, task.name).observe(max(ran, 0.0))

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread until :meth:`close`."""
        self._server, self._thread = start_http_server(port, host, registry=self.registry)

    def close(self) -> None:
        """Stop the HTTP server, if :meth:`serve` started one."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _WorkerCollector(Collector):
    """Metrics read when scraped: listener reconnects, queue depth and lag, and the NOTIFY
    queue's usage from the database."""

    def __init__(self, worker: Measured, read_dsn: str | None = None) -> None:
        self.worker = worker
        self.read_dsn = read_dsn
        self.store = Store(worker.schema)
        self._lock = threading.Lock()  # one scrape connection at a time

    def collect(self) -> Iterator[Metric]:
        yield from self._own()
        yield from self._database()

    def _own(self) -> Iterator[Metric]:
        """What this process knows: its identity, its scheduler's and pruner's counts."""
        from . import __version__

        info = GaugeMetricFamily(
            "pgqueue_worker_info",
            "This worker: its id, pgqueue's version and the queues it claims (value 1)",
            labels=["worker", "version", "queues"],
        )
        info.add_metric([self.worker.id, __version__, ",".join(self.worker.queues)], 1)
        yield info
        scheduler = self.worker.scheduler
        if scheduler is not None:
            for name, counts, what in (
                ("queued", scheduler.ticks_queued, "queued as tasks"),
                ("skipped", scheduler.ticks_skipped, "skipped (missed-run policy or overlap)"),
            ):
                family = CounterMetricFamily(
                    f"pgqueue_scheduler_ticks_{name}",
                    f"Ticks of periodic jobs this worker's scheduler {what}",
                    labels=["job_name"],
                )
                for job_name, n in sorted(dict(counts).items()):
                    family.add_metric([job_name], n)
                yield family
        if self.worker.pruner is not None:
            yield CounterMetricFamily(
                "pgqueue_pruner_deleted",
                "Finished tasks this worker's pruner deleted",
                value=self.worker.pruner.deleted,
            )

    def _database(self) -> Iterator[Metric]:
        """The listener's reconnects and what is read from the database at scrape time."""
        reconnects = CounterMetricFamily(
            "pgqueue_listener_reconnects",
            "Times the LISTEN connection was lost and re-established",
        )
        reconnects.add_metric([], self.worker.listener_reconnects)
        yield reconnects
        depth = GaugeMetricFamily(
            "pgqueue_queue_depth",
            "Tasks per queue in the database that a worker could claim now (QUEUED, RETRY "
            "with run_at passed) or runs (STARTED), read at scrape time",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "pgqueue_oldest_due_task_age_seconds",
            "now() - run_at of the claimable task due longest per queue (0: none due)",
            labels=["queue"],
        )
        depth_rows, oldest_rows, usage, worker_rows, replica_lag = self._read()
        for row in depth_rows:
            depth.add_metric([row["queue"], row["state"]], row["n"])
        for lag in oldest_rows:
            oldest.add_metric([lag["queue"]], lag["seconds"])
        yield depth
        yield oldest
        yield GaugeMetricFamily(
            "pgqueue_notify_queue_usage",
            "How full PostgreSQL's NOTIFY queue is, 0..1 (read at scrape time)",
            value=usage,
        )
        if self.read_dsn is not None:
            yield GaugeMetricFamily(
                "pgqueue_read_replica_lag_seconds",
                "How far the standby that depth and age are read from is behind the primary",
                value=float("nan") if replica_lag is None else replica_lag,
            )

        workers = GaugeMetricFamily(
            "pgqueue_workers",
            "Workers in the database by state: alive, and stopped or lost within the last hour",
            labels=["state"],
        )
        counts = {"alive": 0, "stopped": 0, "lost": 0}
        counts.update({row["state"]: row["n"] for row in worker_rows})
        for state, n in counts.items():
            workers.add_metric([state], n)
        yield workers

    def _read(
        self,
    ) -> tuple[list[DepthRow], list[LagRow], float, list[StateCountRow], float | None]:
        """Depth rows, lag rows, the NOTIFY queue's usage and the workers by state (on one
        short-lived connection to the worker's database) and, with a read DSN, the standby's
        lag: depth and lag rows then come from a second connection, to the standby."""
        with (
            self._lock,
            _db.connect(self.worker.dsn, application_name="pgqueue-metrics") as conn,
        ):
            usage = self.store.notify_queue_usage().run(conn)
            workers = self.store.worker_counts(recent=RECENT_WORKERS).run(conn)
            if self.read_dsn is None:
                depth = self.store.queue_depth().run(conn)
                oldest = self.store.queue_oldest_due().run(conn)
                return depth, oldest, usage, workers, None
        with _db.connect(self.read_dsn, application_name="pgqueue-metrics") as conn:
            depth = self.store.queue_depth().run(conn)
            oldest = self.store.queue_oldest_due().run(conn)
            lag = self.store.server_role().run(conn)["lag"]
        return depth, oldest, usage, workers, lag


def serve_metrics(
    worker: Measured, port: int, host: str = "127.0.0.1", read_dsn: str | None = None
) -> WorkerMetrics:
    """Subscribe :class:`WorkerMetrics` to ``worker`` and serve them on ``host:port``; the
    queue depth and age read from ``read_dsn`` (a standby) when given.

    Raises :class:`pgqueue._errors.ConfigurationError` when the port cannot be bound.
    """
    metrics = WorkerMetrics(worker, read_dsn)
    try:
        metrics.serve(port, host)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from None
    return metrics

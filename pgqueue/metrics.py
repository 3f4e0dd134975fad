"""Prometheus metrics of a worker process (``pgqueue-worker --metrics-port N``).

Needs the ``metrics`` extra (``pip install 'pgqueue[metrics]'``, the official
``prometheus-client``). Every metric lives in the :class:`WorkerMetrics` object's own
registry, so several workers in one process never mix their numbers.

Metrics (all times in seconds, measured on the database clock):

* ``pgqueue_tasks_started_total{queue,job}``: tasks this worker claimed and started.
* ``pgqueue_tasks_finished_total{queue,job,state}``: outcomes this worker recorded
  (SUCCESS, FAILURE, RETRY, REVOKED), including tasks revoked at claim for being expired.
* ``pgqueue_task_wait_seconds{queue,job}``: histogram of time_started - time_queued.
* ``pgqueue_task_run_seconds{queue,job}``: histogram of time_ended - time_started.
* ``pgqueue_claim_batch_size``: histogram of tasks returned by one claim statement.
* ``pgqueue_tasks_in_flight``: tasks claimed and not yet recorded as finished.
* ``pgqueue_listener_reconnects_total``: times the LISTEN connection was re-established.
* ``pgqueue_queue_depth{queue,state}``: live tasks (QUEUED, STARTED, RETRY) per queue in the
  whole database, read at scrape time on a short-lived connection (every worker reports the
  same numbers: aggregate with ``max by (queue, state)``).
* ``pgqueue_notify_queue_usage``: how full PostgreSQL's NOTIFY queue is (0..1), read with the
  depth; from 0.5 pgqueue stops notifying and workers rely on polling (F27).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import _db, states
from ._sql_ops import OpsStatements
from .errors import ConfigurationError
from .task import Task

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .completer import Outcome
    from .worker import Worker

#: Buckets of the wait and run histograms, in seconds: 5 ms to 1 hour.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
#: Buckets of the claim batch size histogram.
BATCH_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class WorkerMetrics:
    """The Prometheus metrics of one :class:`pgqueue.Worker`.

    Attach it with ``worker.metrics = WorkerMetrics(worker)`` before :meth:`Worker.run`; the
    worker calls :meth:`claimed` and :meth:`finished`. :meth:`serve` exposes them over HTTP.
    """

    def __init__(self, worker: Worker) -> None:
        self.registry = CollectorRegistry()
        labels = ["queue", "job"]
        self.started = Counter(
            "pgqueue_tasks_started",
            "Tasks this worker claimed and started",
            labels,
            registry=self.registry,
        )
        self.finished_total = Counter(
            "pgqueue_tasks_finished",
            "Task outcomes this worker recorded, by state",
            [*labels, "state"],
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
        self.registry.register(_WorkerCollector(worker))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

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
        for RETRY). Outcomes missing from ``written`` were fenced off and are not counted."""
        for outcome in outcomes:
            task = outcome.task
            if task.id not in written:
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
    """Metrics read when scraped: listener reconnects, queue depth and NOTIFY queue usage from
    the database."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.sql = OpsStatements(worker.schema)
        self._lock = threading.Lock()  # one scrape connection at a time

    def collect(self) -> Iterator[Metric]:
        reconnects = CounterMetricFamily(
            "pgqueue_listener_reconnects",
            "Times the LISTEN connection was lost and re-established",
        )
        reconnects.add_metric([], self.worker.listener_reconnects)
        yield reconnects
        depth = GaugeMetricFamily(
            "pgqueue_queue_depth",
            "Live tasks per queue and state in the database (read at scrape time)",
            labels=["queue", "state"],
        )
        rows, usage = self._read()
        for row in rows:
            depth.add_metric([row["queue"], row["state"]], row["n"])
        yield depth
        yield GaugeMetricFamily(
            "pgqueue_notify_queue_usage",
            "How full PostgreSQL's NOTIFY queue is, 0..1 (read at scrape time)",
            value=usage,
        )

    def _read(self) -> tuple[list[dict[str, Any]], float]:
        """The queue depth rows and the NOTIFY queue usage, on one short-lived connection."""
        with (
            self._lock,
            _db.connect(self.worker.dsn, application_name="pgqueue-metrics") as conn,
        ):
            rows = conn.execute(self.sql.queue_depth).fetchall()
            usage = conn.execute(self.sql.notify_queue_usage).fetchone()
        return rows, usage["usage"] if usage else 0.0


def serve_metrics(worker: Worker, port: int, host: str = "127.0.0.1") -> WorkerMetrics:
    """Attach :class:`WorkerMetrics` to ``worker`` and serve them on ``host:port``.

    Raises :class:`pgqueue.errors.ConfigurationError` when the port cannot be bound.
    """
    metrics = WorkerMetrics(worker)
    try:
        metrics.serve(port, host)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from None
    worker.metrics = metrics
    return metrics

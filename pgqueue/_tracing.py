"""OpenTelemetry spans that link an enqueue to its execution (the ``tracing`` extra).

Needs ``opentelemetry-api`` (``pip install 'pgqueue[tracing]'``); without it every function
here does nothing. The application configures the tracer provider and exporter as usual;
pgqueue only uses the global one.

* Enqueue: when a span is active, :meth:`TaskBackend.queue_task` (and every other enqueue of
  the backend) stores its W3C trace context in the task's ``meta_params`` under
  ``"traceparent"`` (and ``"tracestate"`` if any), unless the caller set them.
* Execution: the worker runs each task inside a span ``pgqueue.run <job>`` (kind CONSUMER)
  whose parent is that stored context, so the enqueue and the run appear in one trace. A task
  queued with no active span gets a root span. The span carries ``messaging.system=pgqueue``,
  ``messaging.destination.name`` (the queue), ``messaging.message.id`` (the task id),
  ``pgqueue.job`` and ``pgqueue.attempt``; a job that raises sets its status to ERROR and
  records the exception.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ._task import Task

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the tracing extra is not installed
    trace = None  # type: ignore[assignment]

#: Keys of ``meta_params`` that carry the enqueuer's trace context (W3C Trace Context).
CONTEXT_KEYS = ("traceparent", "tracestate")

T = TypeVar("T")


def with_trace_context(meta_params: dict[str, Any]) -> dict[str, Any]:
    """``meta_params`` plus the active span's ``traceparent``/``tracestate``; the same dict
    when no span is active, tracing is not installed, or the caller set ``traceparent``."""
    if trace is None or "traceparent" in meta_params:
        return meta_params
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    found = {key: carrier[key] for key in CONTEXT_KEYS if key in carrier}
    return {**meta_params, **found} if found else meta_params


def configured() -> bool:
    """True when OpenTelemetry is installed and the application set a tracer provider.

    Without one, the global provider is OpenTelemetry's proxy (or no-op) provider and every
    span would be a non-recording one; skipping it saves ~10 microseconds per task. Asking
    costs an environment lookup: a worker asks once per claim, not once per task.
    """
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _spanned(task: Task, provider_set: bool | None = None) -> bool:
    """Whether :func:`run_span` makes a span for ``task``; ``provider_set``: what
    :func:`configured` said, if the caller asked already."""
    if trace is None or "traceparent" in task.meta_params:  # tracestate alone means nothing
        return trace is not None
    return configured() if provider_set is None else provider_set


@contextmanager
def run_span(task: Task) -> Iterator[None]:
    """The span of one execution of ``task`` (see the module docstring); no-op without
    OpenTelemetry, and skipped when no tracer provider is set and the task carries no trace
    context (the span could record nothing and pass nothing on). Exceptions pass through,
    recorded on the span."""
    if not _spanned(task):
        yield
        return
    carrier = {key: str(task.meta_params[key]) for key in CONTEXT_KEYS if key in task.meta_params}
    parent = propagate.extract(carrier) if carrier else otel_context.Context()
    tracer = trace.get_tracer("pgqueue")
    with tracer.start_as_current_span(
        f"pgqueue.run {task.name}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "pgqueue",
            "messaging.destination.name": task.queue,
            "messaging.message.id": task.id,
            "pgqueue.job": task.name,
            "pgqueue.attempt": task.attempts,
        },
    ):
        yield


def traced(
    task: Task, call: Callable[..., T], provider_set: bool | None = None
) -> Callable[..., T]:
    """``call`` wrapped to run inside :func:`run_span` of ``task`` (for thread jobs); ``call``
    itself when no span would be made. ``provider_set``: what :func:`configured` said, when
    the caller asked it once for many tasks."""
    if not _spanned(task, provider_set):
        return call

    def run(*args: Any, **kwargs: Any) -> T:
        with run_span(task):
            return call(*args, **kwargs)

    return run


async def traced_coroutine(task: Task, coroutine: Coroutine[Any, Any, T]) -> T:
    """Await ``coroutine`` inside :func:`run_span` of ``task`` (for ``async`` jobs)."""
    with run_span(task):
        return await coroutine

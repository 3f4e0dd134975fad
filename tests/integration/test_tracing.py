"""OpenTelemetry spans: an enqueue and its execution in one trace (the tracing extra)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pgqueue import TaskBackend

OPS_JOBS = "tests.support.ops_jobs"
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER


def run_span(exporter: InMemorySpanExporter, task_id: str) -> ReadableSpan:
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.attributes and s.attributes.get("messaging.message.id") == task_id
    ]
    assert len(found) == 1, exporter.get_finished_spans()
    return found[0]


def test_the_run_span_is_a_child_of_the_enqueuing_span(
    dsn: str, start_worker: Any, spans: InMemorySpanExporter
) -> None:
    start_worker(task_paths=[OPS_JOBS])
    tracer = trace.get_tracer("tests")
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        with tracer.start_as_current_span("handle request") as request:
            ok = str(client.queue_task("double", n=2))
            failed = str(client.queue_task("broken", meta_params={"who": "test"}))
        stored = client.get_task(failed)
        assert stored is not None and stored.meta_params["who"] == "test"
        assert stored.meta_params["traceparent"].split("-")[1] == format(
            request.get_span_context().trace_id, "032x"
        )
        client.wait_for_task(ok, timeout=30)
        client.wait_for_task(failed, timeout=30)
    parent = request.get_span_context()
    span = run_span(spans, ok)
    assert span.name == "pgqueue.run double" and span.kind == trace.SpanKind.CONSUMER
    assert span.parent is not None and span.parent.span_id == parent.span_id
    assert span.context.trace_id == parent.trace_id
    assert span.attributes is not None
    assert span.attributes["messaging.destination.name"] == "tasks"
    assert span.attributes["pgqueue.attempt"] == 1
    bad = run_span(spans, failed)
    assert bad.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in bad.events] == ["exception"]


def test_a_task_queued_outside_any_span_gets_a_root_span(
    dsn: str, start_worker: Any, spans: InMemorySpanExporter
) -> None:
    start_worker(task_paths=[OPS_JOBS])
    with TaskBackend(dsn, task_paths=[OPS_JOBS]) as client:
        task_id = str(client.queue_task("double", n=1))
        task = client.wait_for_task(task_id, timeout=30)
    assert "traceparent" not in task.meta_params
    assert run_span(spans, task_id).parent is None

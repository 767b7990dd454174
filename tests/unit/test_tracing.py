"""notify_core.tracing: the provider each process installs, the propagating spans used when nothing
exports, trace context in and out of Kafka headers, and the messaging and HTTP attributes.

No test here installs a global tracer provider (a process can set it only once): providers are
built and used directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from notify_core.settings import Settings
from notify_core.tracing import (
    PropagatingTracer,
    PropagatingTracerProvider,
    build_provider,
    current,
    http_response,
    messaging_attributes,
    parent_from_headers,
    setup_tracing,
    trace_headers,
    without_trace_headers,
)

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT = [("traceparent", f"00-{TRACE_ID:032x}-b7ad6b7169203331-01".encode())]


@pytest.fixture
def recorded() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def test_without_an_endpoint_the_provider_only_propagates() -> None:
    """Tracing on, no OTLP endpoint (the default): the propagating provider, no SDK, no exporter."""
    provider = build_provider(Settings(), "notify-router")
    assert isinstance(provider, PropagatingTracerProvider)
    assert isinstance(provider.get_tracer("x"), PropagatingTracer)


def test_with_an_endpoint_spans_go_to_it_in_batches_under_the_service_name() -> None:
    """``otlp_endpoint`` set: an SDK provider named by ``service.name`` whose one processor batches
    spans to the OTLP/HTTP exporter at that endpoint."""
    endpoint = "http://127.0.0.1:4318/v1/traces"
    provider = build_provider(Settings(otlp_endpoint=endpoint), "notify-worker-sms")
    assert isinstance(provider, TracerProvider)
    try:
        assert provider.resource.attributes["service.name"] == "notify-worker-sms"
        [processor] = provider._active_span_processor._span_processors
        assert isinstance(processor, BatchSpanProcessor)
        exporter = processor._batch_processor._exporter
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == endpoint
    finally:
        provider.shutdown()


def test_tracing_disabled_installs_nothing() -> None:
    """With tracing off the global provider is left as it was (whatever another test in this process
    installed before)."""
    before = trace.get_tracer_provider()
    assert setup_tracing(Settings(tracing_enabled=False), "notify-router") is None
    assert trace.get_tracer_provider() is before


def test_a_propagating_span_continues_the_trace_in_its_headers() -> None:
    """A child of the context in a record's headers: same trace, a span id of its own, the parent's
    sampling flag, nothing recorded; its headers carry exactly that."""
    span = PropagatingTracer().start_span("process t.ios", context=parent_from_headers(PARENT))
    own = span.get_span_context()
    assert (own.trace_id, own.trace_flags.sampled, span.is_recording()) == (TRACE_ID, True, False)
    assert own.span_id not in (0, 0xB7AD6B7169203331)
    [(key, value)] = trace_headers(span)
    assert (key, value) == ("traceparent", f"00-{TRACE_ID:032x}-{own.span_id:016x}-01".encode())


def test_a_propagating_root_starts_a_sampled_trace() -> None:
    """A record without trace headers (an SDK with no provider sent it) starts a new trace, sampled so
    that a process downstream that does export records its part."""
    first = PropagatingTracer().start_span("process t.requests", context=parent_from_headers([]))
    second = PropagatingTracer().start_span("process t.requests", context=parent_from_headers(None))
    a, b = first.get_span_context(), second.get_span_context()
    assert a.is_valid
    assert b.is_valid
    assert a.trace_flags.sampled
    assert a.trace_id != b.trace_id


def test_a_current_propagating_span_is_what_trace_headers_carry() -> None:
    tracer = PropagatingTracer()
    with current(tracer.start_span("process t.sms", context=parent_from_headers(PARENT))) as span:
        assert trace_headers() == trace_headers(span)
    assert trace_headers() == []  # nothing current outside


def test_offspring_headers_drop_only_the_trace_context() -> None:
    headers: list[tuple[str, bytes | str | None]] = [
        ("content-type", b"avro"),
        *PARENT,
        ("tracestate", b"k=v"),
        ("x-own", b"1"),
    ]
    assert without_trace_headers(headers) == [("content-type", b"avro"), ("x-own", b"1")]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"operation": "send", "topic": "p.requests"},
            {
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": "p.requests",
            },
        ),
        (
            {
                "operation": "process",
                "topic": "p.ios.retry-5s",
                "partition": 2,
                "offset": 41,
                "group": "g-ios",
            },
            {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": "p.ios.retry-5s",
                "messaging.destination.partition.id": "2",
                "messaging.kafka.offset": 41,
                "messaging.consumer.group.name": "g-ios",
            },
        ),
    ],
)
def test_messaging_attributes(kwargs: dict[str, object], expected: dict[str, object]) -> None:
    """The messaging conventions' names; the partition id is a string, no message key (a user id)."""
    assert messaging_attributes(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(200, 200, None), ("200", 200, None), (429, 429, "429"), ("", None, None), (None, None, None)],
)
def test_http_response_marks_4xx_and_5xx_as_errors(
    recorded: tuple[trace.Tracer, InMemorySpanExporter],
    status: int | str | None,
    code: int | None,
    error: str | None,
) -> None:
    tracer, exporter = recorded
    span = tracer.start_span("POST apns", kind=SpanKind.CLIENT)
    http_response(span, status)
    span.end()
    [done] = exporter.get_finished_spans()
    assert done.attributes is not None
    assert done.attributes.get("http.response.status_code") == code
    assert done.attributes.get("error.type") == error
    assert done.status.status_code is (StatusCode.ERROR if error else StatusCode.UNSET)


def test_an_exception_marks_the_span_by_its_class_never_its_text(
    recorded: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    """The text may quote a phone number or an address: it stays out of spans and their events."""
    tracer, exporter = recorded
    with pytest.raises(ValueError, match="refused"), current(tracer.start_span("smtp send")):
        raise ValueError("refused ann@example.com")
    [done] = exporter.get_finished_spans()
    assert done.attributes is not None
    assert done.attributes["error.type"] == "ValueError"
    assert done.status.status_code is StatusCode.ERROR
    assert done.events == ()
    assert "ann@example.com" not in str(done.to_json())

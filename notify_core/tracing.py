"""Traces: spans for produce, route and deliver, their context carried in Kafka headers (W3C ``traceparent``).

Every span is made through the OpenTelemetry *API* (``TRACER``), so whatever tracer provider the
process has is honoured. The SDK (``producer``) never installs one: an application's own provider is
used, and without one the SDK's spans are no-ops and its records carry no trace header (the router
then starts the trace). Each process of ours calls ``setup_tracing`` once, at its entry point:

- ``tracing_enabled`` with ``otlp_endpoint``: the OpenTelemetry SDK's ``TracerProvider`` (resource
  ``service.name``), exporting through a ``BatchSpanProcessor`` to that OTLP/HTTP endpoint (a full
  queue drops spans, it never blocks the pipeline).
- ``tracing_enabled``, no endpoint (the default): ``PropagatingTracerProvider``. Its spans record
  nothing and are never exported, but each gets a span id of its own under its parent's trace (a
  new trace for a request that arrived without one), so the context flows from hop to hop and log
  lines carry the trace id. That costs a few microseconds a span; an SDK span that no exporter
  reads costs about ten times as much (attributes, times, events kept for nobody).
- ``tracing_enabled`` false: nothing is installed. The API's no-op spans hand the incoming context
  on unchanged, so the headers still carry the caller's trace.

The hops, with names and attributes after OpenTelemetry's messaging conventions: the SDK's ``send
<requests topic>`` (PRODUCER, one per request) → the router's ``process <requests topic>``
(CONSUMER, parent: the record's headers); the channel records and events it writes carry that span's
context → a worker's ``process <channel or retry topic>`` (CONSUMER) with the provider call inside
(CLIENT, e.g. ``POST apns``); the retry copy and the events it writes carry the worker span's
context, so the next attempt continues the same trace.

Exception texts never go on a span (they may quote a phone number or an address): an error is its
class name in ``error.type`` and the span's status.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from notify_core.settings import Settings

# A proxy until a provider is installed, then that provider's tracer: safe to make at import.
TRACER = trace.get_tracer("notify")
_TRACE_KEYS = ("traceparent", "tracestate")


def trace_headers(span: Span | None = None) -> list[tuple[str, bytes]]:
    """``span``'s context (default: the current span's) as Kafka headers; empty without a valid one."""
    if span is not None and not span.get_span_context().is_valid:
        return []  # no provider and no caller span (an SDK user without OpenTelemetry): nothing to carry
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=None if span is None else trace.set_span_in_context(span))
    return [(key, value.encode()) for key, value in carrier.items()]


def context_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """A carrier dict from Kafka headers, for ``propagate.extract``."""
    return {key: value.decode("latin-1") for key, value in headers or [] if key in _TRACE_KEYS}


def parent_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> Context:
    """The context a record's headers carry; an empty one (a new trace) when they carry none."""
    carrier = context_from_headers(headers)
    return propagate.extract(carrier) if carrier else Context()


def only_trace_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The trace context among ``headers``: what a replayed or released copy carries on."""
    return [(key, value) for key, value in headers if key in _TRACE_KEYS]


def without_trace_headers(
    headers: Sequence[tuple[str, bytes | str | None]],
) -> list[tuple[str, bytes | str | None]]:
    """``headers`` minus the trace context, so a record's offspring can carry a newer one."""
    return [(key, value) for key, value in headers if key not in _TRACE_KEYS]


def messaging_attributes(
    operation: str,
    topic: str,
    *,
    partition: int | None = None,
    offset: int | None = None,
    group: str | None = None,
) -> dict[str, AttributeValue]:
    """The messaging-convention attributes of a Kafka ``send`` or ``process`` (no message key: ours
    is a user id)."""
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": topic,
    }
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attributes["messaging.kafka.offset"] = offset
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    return attributes


def process_span(
    topic: str, partition: int, offset: int, headers: Sequence[tuple[str, bytes]] | None, *, group: str
) -> Span:
    """A started ``process <topic>`` CONSUMER span whose parent is the context in ``headers``."""
    span = TRACER.start_span(f"process {topic}", context=parent_from_headers(headers), kind=SpanKind.CONSUMER)
    if span.is_recording():
        span.set_attributes(
            messaging_attributes("process", topic, partition=partition, offset=offset, group=group)
        )
    return span


def mark_error(span: Span, error: BaseException | str) -> None:
    """Error status on ``span``, named by the exception's class (or ``error``), never its text."""
    kind = error if isinstance(error, str) else type(error).__qualname__
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, kind))


@contextmanager
def current(span: Span) -> Iterator[Span]:
    """``span`` is the current span inside the block, and is ended after it (marked with
    ``mark_error`` when the block raised)."""
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield span
        except BaseException as exc:
            mark_error(span, exc)
            raise


@contextmanager
def provider_call(
    name: str,
    *,
    server_address: str,
    server_port: int | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """A CLIENT span around one call to a provider (``POST apns``), current inside the block; an
    exception out of the block marks it (``mark_error``)."""
    span = TRACER.start_span(name, kind=SpanKind.CLIENT)
    if span.is_recording():
        span.set_attribute("server.address", server_address)
        if server_port is not None:
            span.set_attribute("server.port", server_port)
        span.set_attributes(attributes or {})
    with current(span):
        yield span


def http_call(name: str, url: str, template: str) -> AbstractContextManager[Span]:
    """``provider_call`` for an HTTP POST to ``url`` (``template``: its path with placeholders, never
    the token or number itself)."""
    parts = urlsplit(url)
    return provider_call(
        name,
        server_address=parts.hostname or "",
        server_port=parts.port or (443 if parts.scheme == "https" else 80),
        attributes={"http.request.method": "POST", "url.template": template},
    )


def http_response(span: Span, status_code: int | str | None) -> None:
    """The provider's HTTP status on its call's span; 4xx and 5xx are errors (HTTP client convention).
    A status that is not a number (a reset stream has none) is left out."""
    try:
        code = int(status_code or "")
    except ValueError:
        return
    span.set_attribute("http.response.status_code", code)
    if code >= 400:
        mark_error(span, str(code))


# --- the process's provider ----------------------------------------------------------------------
class PropagatingTracer(trace.Tracer):
    """Spans that only carry context: a new span id under the parent's trace, or a new sampled trace
    for a root. Nothing is recorded (``is_recording()`` is false, so callers skip their attributes)."""

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
        else:  # a root: sampled, so a process downstream that does export records its part
            trace_id, flags, state = _new_id(128), TraceFlags(TraceFlags.SAMPLED), TraceState()
        own = SpanContext(trace_id, _new_id(64), is_remote=False, trace_flags=flags, trace_state=state)
        return NonRecordingSpan(own)

    # The API types it with a private context-manager class (its own ProxyTracer ignores this too).
    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        with trace.use_span(self.start_span(name, context), end_on_exit=end_on_exit) as span:
            yield span


class PropagatingTracerProvider(trace.TracerProvider):
    """The provider when tracing is on but nothing exports: see ``PropagatingTracer``."""

    _tracer = PropagatingTracer()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> trace.Tracer:
        return self._tracer


def _new_id(bits: int) -> int:
    while True:  # zero is the invalid id
        value = random.getrandbits(bits)  # ids, not secrets: the SDK's generator does the same
        if value:
            return value


def build_provider(settings: Settings, service_name: str) -> trace.TracerProvider:
    """The provider ``setup_tracing`` installs when tracing is enabled (see the module docstring)."""
    if settings.otlp_endpoint is None:
        return PropagatingTracerProvider()
    # The server extra's packages: imported only here, so the SDK's base install never needs them.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    return provider


def setup_tracing(settings: Settings, service_name: str) -> trace.TracerProvider | None:
    """Install this process's tracer provider, once, at its entry point; returns it. ``None``: tracing
    is off, or a provider was installed already (by an embedding application or a test) and is kept.
    An exporting provider flushes what it holds when the process exits."""
    if not settings.tracing_enabled:
        return None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    provider = build_provider(settings, service_name)
    trace.set_tracer_provider(provider)
    return provider

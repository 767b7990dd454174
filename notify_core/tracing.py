"""Trace context across Kafka hops: W3C ``traceparent`` in record headers.

Uses the OpenTelemetry API's global propagator, so whatever tracer provider the entry point set up
is honoured; without one, no header is added.
"""

from __future__ import annotations

from opentelemetry import propagate


def trace_headers() -> list[tuple[str, bytes]]:
    """The current span's context as Kafka headers (empty when there is no active span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


def context_from_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """A carrier dict from Kafka headers, for ``propagate.extract``."""
    return {
        key: value.decode("latin-1") for key, value in headers or [] if key in ("traceparent", "tracestate")
    }

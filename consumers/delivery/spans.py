"""A delivery's span and log context: one ``process <topic>`` CONSUMER span per record a worker handles.

The span's parent is the context the record's headers carry: the router's span for a fresh channel
message, the previous attempt's span for a retry copy. While it is current, the provider call inside
gets its CLIENT span as a child, and the retry copy and events the delivery writes carry its context
(``deliverer._carried_headers``), so every attempt of a delivery is in the request's one trace. Log
lines written meanwhile (ours and the libraries') carry ``notification_id`` and ``delivery_id``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span

from consumers.delivery.decide import Step
from consumers.delivery.outcome import Outcome
from notify_core.records import Record
from notify_core.tracing import current, process_span


@contextmanager
def delivery_span(record: Record, message: Mapping[str, Any] | None, *, group: str) -> Iterator[Span]:
    """``record``'s span, current inside the block, with the message's ids bound for log lines (a
    record that did not decode has none)."""
    span = process_span(record.topic, record.partition, record.offset, record.headers, group=group)
    ids: dict[str, str] = {}
    if message is not None:
        ids = {"notification_id": str(message["notification_id"]), "delivery_id": str(message["delivery_id"])}
        if span.is_recording():
            span.set_attributes({f"notify.{key}": value for key, value in ids.items()})
    with current(span), structlog.contextvars.bound_contextvars(**ids):
        yield span


def note_attempt(attempt: int, outcome: Outcome, step: Step) -> None:
    """What the provider call of this attempt came to, on the current (delivery) span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(
            {
                "notify.attempt": attempt,
                "notify.outcome": outcome.status.value,
                "notify.outcome.reason": outcome.reason,
                "notify.next": step.action.value,
            }
        )

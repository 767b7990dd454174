"""Builders for the records every step writes: analytics events and dead letters (pure).

One place that knows the field layout of ``notification_event`` and ``dead_letter`` so the router,
the workers and the HTTP API emit identical shapes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notify_core.records import Record
from notify_core.topics import Channel


def event(
    event_type: str,
    *,
    occurred_at: datetime,
    notification_id: str,
    user_id: str,
    service: str | None = None,
    delivery_id: str | None = None,
    channel: Channel | None = None,
    category: str | None = None,
    reason: str | None = None,
    provider: str | None = None,
    provider_message_id: str | None = None,
    attempt: int | None = None,
    latency_ms: float | None = None,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``notification_event`` record. ``event_type`` is the Avro symbol (ROUTED, SENT, ...)."""
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": occurred_at,
        "notification_id": notification_id,
        "delivery_id": delivery_id,
        "user_id": user_id,
        "service": service,
        "channel": channel.value.upper() if channel is not None else None,
        "category": category,
        "reason": reason,
        "provider": provider,
        "provider_message_id": provider_message_id,
        "attempt": attempt,
        "latency_ms": latency_ms,
        "attributes": attributes or {},
    }


@dataclass(frozen=True)
class Failure:
    error_type: str  # machine-readable: decode_error, invalid_request, BadDeviceToken, ...
    message: str


def dead_letter(
    record: Record,
    failure: Failure,
    *,
    stage: str,
    failed_at: datetime,
    attempts: int = 0,
    first_failed_at: datetime | None = None,
) -> dict[str, Any]:
    """A ``dead_letter`` record wrapping the original bytes untouched."""
    return {
        "dead_letter_id": str(uuid.uuid4()),
        "failed_at": failed_at,
        "stage": stage,
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "key": record.key,
        "payload": record.value or b"",
        "headers": dict(record.headers),
        "error_type": failure.error_type,
        "error_message": failure.message,
        "attempts": attempts,
        "first_failed_at": first_failed_at,
    }

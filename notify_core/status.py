"""What became of one notification: the router's decision and each delivery's state (read model).

The router writes its decision to ``router_outcomes`` (accepted and routed, suppressed and why,
or rejected; per channel too) in the transaction that records its other state; the channel
workers keep ``delivery_log`` (state, attempts, last error, provider message id). ``lookup_status``
reads both for one id, in two statements over one pooled connection, and answers only for the
service that sent the request: ``None`` for an unknown id and for another service's, so the API
answers both with the same 404 and a service cannot probe for other services' ids.

Past the dedupe window the router's row is pruned while ``delivery_log`` keeps finished rows
longer (``delivery_log_retention_s``). Those rows say nothing about the service, so they are shown
only to a caller that names no service (``service=None``: operators, support tools); for a named
service such a notification is unknown.

``ChannelStatus`` is also what the router writes into the ``channels`` column: one type knows the
JSON layout on both sides. No psycopg error escapes: they become ``DatabaseError``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from notify_core.db.connect import pooled

MAX_DELIVERIES = 100  # a request fans out to a user's devices and contacts: far fewer in practice
_OUTCOME = (
    "select notification_id, service, user_id, category, template_id, outcome, reason, decided_at, channels"
    " from router_outcomes where notification_id = %s"
)
_DELIVERIES = (
    "select delivery_id, channel, status, attempts, last_error, provider_message_id, sent_at, updated_at"
    " from delivery_log where notification_id = %s order by created_at, delivery_id limit %s"
)


@dataclass(frozen=True)
class ChannelStatus:
    """The router's decision for one delivery (routed, deferred) or one suppressed channel."""

    channel: str  # ios, android, sms, email
    state: str  # routed, deferred, suppressed
    delivery_id: str | None = None  # routed and deferred
    reason: str | None = None  # suppressed: opted_out, unsubscribed, no_contact, capped, no_template
    deliver_at: datetime | None = None  # deferred: when it is due

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "state": self.state,
            "delivery_id": self.delivery_id,
            "reason": self.reason,
            "deliver_at": _iso(self.deliver_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChannelStatus:
        at = data.get("deliver_at")
        return cls(
            channel=str(data["channel"]),
            state=str(data["state"]),
            delivery_id=data.get("delivery_id"),
            reason=data.get("reason"),
            deliver_at=datetime.fromisoformat(at) if at else None,
        )


@dataclass(frozen=True)
class DeliveryStatus:
    """One delivery as its channel worker last recorded it."""

    delivery_id: str
    channel: str
    status: str  # sending, sent, retrying, failed, dead_lettered
    attempts: int
    last_error: str | None
    provider_message_id: str | None
    sent_at: datetime | None
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "channel": self.channel,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "provider_message_id": self.provider_message_id,
            "sent_at": _iso(self.sent_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class NotificationStatus:
    """The router's decision (``None`` fields once it was pruned) and the deliveries it led to."""

    notification_id: str
    service: str | None
    user_id: str | None
    category: str | None
    template_id: str | None
    outcome: str | None  # routed, suppressed, rejected; None: the router's row was pruned
    reason: str | None  # why the whole request was suppressed or rejected
    decided_at: datetime | None
    channels: tuple[ChannelStatus, ...] = ()
    deliveries: tuple[DeliveryStatus, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only (times as ISO-8601 strings), for the HTTP API."""
        return {
            "notification_id": self.notification_id,
            "service": self.service,
            "user_id": self.user_id,
            "category": self.category,
            "template_id": self.template_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "decided_at": _iso(self.decided_at),
            "channels": [c.to_json() for c in self.channels],
            "deliveries": [d.to_json() for d in self.deliveries],
        }


def lookup_status(
    pool: ConnectionPool[psycopg.Connection[Any]], notification_id: str | uuid.UUID, service: str | None
) -> NotificationStatus | None:
    """The status of ``notification_id`` as ``service`` may see it; None when unknown or not its own.

    ``service=None`` skips the ownership check and answers from the deliveries alone when the
    router's row was pruned: for operators, never for a caller acting for one service.
    """
    nid = _canonical(notification_id)
    if nid is None:
        return None  # not a UUID: no request can have it (and nothing to ask the database)
    with pooled(pool, "notification status") as conn:
        row = conn.execute(_OUTCOME, (nid,)).fetchone()
        if row is None and service is not None:
            return None
        if row is not None and service is not None and row[1] != service:
            return None  # another service's: indistinguishable from unknown, on purpose
        deliveries = conn.execute(_DELIVERIES, (nid, MAX_DELIVERIES)).fetchall()
    found = tuple(_delivery(d) for d in deliveries)
    if row is None:
        if not found:
            return None
        return NotificationStatus(nid, None, None, None, None, None, None, None, (), found)
    channels = tuple(ChannelStatus.from_json(c) for c in row[8])
    if service is not None:
        # Only the deliveries this decision made: ids are unique only by convention, and a row some
        # other service's request left under the same id must not show here.
        own = {c.delivery_id for c in channels if c.delivery_id is not None}
        found = tuple(d for d in found if d.delivery_id in own)
    return NotificationStatus(
        notification_id=str(row[0]),
        service=str(row[1]),
        user_id=str(row[2]),
        category=str(row[3]),
        template_id=str(row[4]),
        outcome=str(row[5]),
        reason=row[6],
        decided_at=row[7],
        channels=channels,
        deliveries=found,
    )


def _delivery(row: tuple[Any, ...]) -> DeliveryStatus:
    delivery_id, channel, status, attempts, last_error, message_id, sent_at, updated = row
    return DeliveryStatus(
        str(delivery_id), str(channel), str(status), int(attempts), last_error, message_id, sent_at, updated
    )


def _canonical(notification_id: str | uuid.UUID) -> str | None:
    """The id as the router stores it (lowercase, hyphenated), or None when it is not a UUID."""
    if isinstance(notification_id, uuid.UUID):
        return str(notification_id)
    try:
        return str(uuid.UUID(notification_id.strip()))
    except ValueError:
        return None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None

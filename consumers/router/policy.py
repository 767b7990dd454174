"""Routing policy: pure functions from a request and what we know about the user to a ``Decision``.

No I/O here. The router's Kafka loop gathers the inputs (user context, category, cap usage, the
clock) and acts on the decision; every rule is tested from tables.

Rules, in order:
1. an expired request is dropped;
2. the candidate channels are the requested ones (all four when none is named);
3. a global channel unsubscribe or an explicit opt-out for the category suppresses the channel,
   unless the category is mandatory (security alerts); critical priority does not override opt-outs;
4. a channel without an active device or contact is suppressed (``no_contact``);
5. a channel whose per-user daily cap for the category is used up is suppressed (``capped``),
   unless the priority is critical;
6. each surviving device or contact becomes one ``Target`` with a stable ``delivery_id``;
7. delivery time: ``send_at`` when in the future; then, for interruptive channels (push, SMS) and
   non-critical requests, the end of the user's quiet hours if that time falls inside them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notify_core.topics import Channel
from notify_core.userdata.models import Category, QuietHours, UserContext

# delivery ids are uuid5 in this namespace: the same request and target always give the same id.
DELIVERY_NAMESPACE = uuid.UUID("6f2a4f5e-3c1d-4b7a-9e0f-5d8c7b6a5f41")
INTERRUPTIVE = frozenset({Channel.IOS, Channel.ANDROID, Channel.SMS})
PUSH = frozenset({Channel.IOS, Channel.ANDROID})


@dataclass(frozen=True)
class RouteRequest:
    """The fields of a notification request that routing reads."""

    notification_id: str
    user_id: str
    category: str
    priority: str  # LOW, NORMAL, HIGH, CRITICAL
    channels: tuple[Channel, ...]  # empty: every channel
    send_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def critical(self) -> bool:
        return self.priority == "CRITICAL"


@dataclass(frozen=True)
class Target:
    channel: Channel
    address: str  # device token, E.164 number or e-mail address
    target_ref: str  # "device:<id>" or "contact:<id>"
    delivery_id: str
    deliver_at: datetime | None = None  # None: now


@dataclass(frozen=True)
class Suppression:
    channel: Channel
    reason: str  # unsubscribed, opted_out, no_contact, capped


@dataclass(frozen=True)
class Decision:
    targets: tuple[Target, ...] = ()
    suppressed: tuple[Suppression, ...] = ()
    dropped: str | None = None  # the whole request: expired, unknown_user


def delivery_id(notification_id: str, channel: Channel, target_ref: str) -> str:
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{notification_id}/{channel.value}/{target_ref}"))


def cap_key(notification_id: str, channel: Channel) -> str:
    """What one notification counts as against a cap: once per channel, however many devices."""
    return f"{notification_id}/{channel.value}"


def route(
    request: RouteRequest,
    context: UserContext | None,
    category: Category,
    now: datetime,
    cap_usage: Mapping[Channel, int],
) -> Decision:
    """Decide who gets what, and when. ``cap_usage``: notifications already routed today per channel."""
    if request.expires_at is not None and request.expires_at <= now:
        return Decision(dropped="expired")
    if context is None:
        return Decision(dropped="unknown_user")

    prefs = context.preferences
    targets: list[Target] = []
    suppressed: list[Suppression] = []
    for channel in request.channels or tuple(Channel):
        if not category.mandatory:
            if channel in prefs.unsubscribed:
                suppressed.append(Suppression(channel, "unsubscribed"))
                continue
            if prefs.choices.get((category.name, channel)) is False:
                suppressed.append(Suppression(channel, "opted_out"))
                continue
        addresses = _addresses(context, channel)
        if not addresses:
            suppressed.append(Suppression(channel, "no_contact"))
            continue
        cap = category.daily_caps.get(channel)
        if cap is not None and not request.critical and cap_usage.get(channel, 0) >= cap:
            suppressed.append(Suppression(channel, "capped"))
            continue
        when = deliver_at(request, channel, prefs.quiet_hours, context.user.time_zone, now)
        for address, ref in addresses:
            targets.append(
                Target(channel, address, ref, delivery_id(request.notification_id, channel, ref), when)
            )
    return Decision(tuple(targets), tuple(suppressed))


def _addresses(context: UserContext, channel: Channel) -> list[tuple[str, str]]:
    if channel in PUSH:
        return [
            (d.token, f"device:{d.device_id}") for d in context.devices if d.platform == channel and d.active
        ]
    return [
        (c.address, f"contact:{c.contact_id}") for c in context.contacts if c.channel == channel and c.active
    ]


def deliver_at(
    request: RouteRequest, channel: Channel, quiet: QuietHours | None, time_zone: str, now: datetime
) -> datetime | None:
    """When to deliver on ``channel``: None for right away."""
    due = request.send_at if request.send_at is not None and request.send_at > now else None
    if quiet is not None and channel in INTERRUPTIVE and not request.critical:
        end = quiet_end(due or now, quiet, time_zone)
        if end is not None:
            due = end
    return due


def quiet_end(moment: datetime, quiet: QuietHours, time_zone: str) -> datetime | None:
    """The UTC end of the quiet period containing ``moment``, or None when ``moment`` is not quiet."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = moment.astimezone(zone)
    clock = local.timetz().replace(tzinfo=None)
    if not _inside(clock, quiet):
        return None
    end_day = local.date()
    if quiet.start > quiet.end and clock >= quiet.start:
        end_day += timedelta(days=1)  # the window wraps midnight and we are before it
    end_local = datetime.combine(end_day, quiet.end, tzinfo=zone)
    return end_local.astimezone(UTC)


def _inside(clock: time, quiet: QuietHours) -> bool:
    if quiet.start < quiet.end:
        return quiet.start <= clock < quiet.end
    return clock >= quiet.start or clock < quiet.end


def dedupe_keys(notification_id: str, service: str, idempotency_key: str | None) -> list[str]:
    """The keys under which a request counts as seen."""
    keys = [f"id:{notification_id}"]
    if idempotency_key:
        keys.append(f"idem:{service}:{idempotency_key}")
    return keys


def is_duplicate(keys: list[str], seen: Mapping[str, tuple[int, int]], position: tuple[int, int]) -> bool:
    """Seen before at another (partition, offset)?

    A key recorded at this record's own position is our own earlier attempt whose Kafka transaction
    aborted (the router was killed before committing): that replay is not a duplicate.
    """
    return any(key in seen and seen[key] != position for key in keys)

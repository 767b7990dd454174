"""One request's outcome row for ``router_outcomes``, summed up from the decision events it produced.

Pure. The batch planner calls ``outcome_of`` once a request is planned, with the ROUTED and
SUPPRESSED events it emitted for it: the status endpoint then reads exactly what the analytics topic
was told, and no second account of the decision can drift from the first.

- an event without a channel decides the whole request: SUPPRESSED ``invalid`` is a rejection (its
  ``error_type`` is the reason), any other reason (duplicate, expired, unknown_user) a suppression;
- otherwise each ROUTED event is one delivery (``deferred`` when it carries ``deliver_at``) and each
  SUPPRESSED one a channel left out; with no delivery at all the request is suppressed, for the
  channels' common reason (opted out of everything) or ``all_channels_suppressed`` when they differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notify_core.request_model import NotificationRequest
from notify_core.status import ChannelStatus

MIXED_REASONS = "all_channels_suppressed"


@dataclass(frozen=True)
class OutcomeRow:
    notification_id: str
    service: str
    user_id: str
    category: str
    template_id: str
    outcome: str  # routed, suppressed, rejected
    reason: str | None  # the whole request's: None when routed
    channels: tuple[ChannelStatus, ...]
    source_partition: int  # the request record: a replay of it may replace this row, a duplicate not
    source_offset: int


def outcome_of(
    request: NotificationRequest, position: tuple[int, int], events: Iterable[Mapping[str, Any]]
) -> OutcomeRow:
    """The row for ``request`` (read at ``position``) from the events planned for it, in order."""
    channels: list[ChannelStatus] = []
    whole: tuple[str, str] | None = None  # (outcome, reason) decided for the request as a whole
    for ev in events:
        kind, channel, reason = ev.get("event_type"), ev.get("channel"), ev.get("reason")
        if kind == "SUPPRESSED" and channel is None:
            if reason == "invalid":
                whole = ("rejected", str(ev.get("attributes", {}).get("error_type") or "invalid"))
            else:
                whole = ("suppressed", str(reason))
        elif kind == "SUPPRESSED":
            channels.append(ChannelStatus(str(channel).lower(), "suppressed", reason=reason))
        elif kind == "ROUTED":
            due = ev.get("attributes", {}).get("deliver_at")
            channels.append(
                ChannelStatus(
                    str(channel).lower(),
                    "deferred" if due else "routed",
                    delivery_id=ev.get("delivery_id"),
                    deliver_at=datetime.fromisoformat(due) if due else None,
                )
            )
    if whole is not None:
        outcome, reason = whole
        if outcome == "rejected":
            channels = []  # the plan was undone before the rejection: nothing of it was routed
    elif any(c.state != "suppressed" for c in channels):
        outcome, reason = "routed", None
    else:
        reasons = {c.reason for c in channels}
        only = next(iter(reasons)) if len(reasons) == 1 else None
        outcome, reason = "suppressed", only or MIXED_REASONS
    return OutcomeRow(
        notification_id=str(request.notification_id),
        service=request.service,
        user_id=request.user_id,
        category=request.category,
        template_id=request.template_id,
        outcome=outcome,
        reason=reason,
        channels=tuple(channels),
        source_partition=position[0],
        source_offset=position[1],
    )

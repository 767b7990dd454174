"""When a record on a retry tier is due, and which tier a retry copy goes to (pure).

Retry copies wait in tiered topics (``notify_core.topics.RETRY_TIERS_S``). A worker that meets a
record not yet due pauses that partition until it is. A record's wait is bounded by its tier's
delay from the moment it was written, whatever its ``not_before`` says: a crafted or corrupt
far-future time (year 9000) then costs one tier's delay, never a blocked partition.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notify_core.topics import retry_tier


def due_at(not_before: datetime | None, written_ms: int | None, tier_s: int, now: datetime) -> datetime:
    """When a record read from a retry tier should be sent: ``not_before``, at most a tier after writing."""
    written = datetime.fromtimestamp(written_ms / 1000, UTC) if written_ms is not None else now
    latest = min(written, now) + timedelta(seconds=tier_s)
    if not_before is None:
        return now
    return min(not_before, latest)


def tier_for(not_before: datetime, now: datetime) -> int:
    """The retry tier a copy due at ``not_before`` goes to."""
    return retry_tier((not_before - now).total_seconds())


def counts_as_busy(due: datetime, now: datetime, idle_s: float) -> bool:
    """Burst mode: a paused partition due within one idle period is work still to do; later is idle."""
    return due <= now + timedelta(seconds=idle_s)

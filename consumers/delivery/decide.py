"""What happens after a provider call (pure): mark sent, retry at a time, or dead-letter."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from consumers.delivery.backoff import BackoffPolicy
from consumers.delivery.outcome import Outcome, Status


class Action(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Step:
    action: Action
    error_type: str = ""  # the dead letter's error_type, or the retry's reason
    message: str = ""
    not_before: datetime | None = None
    deactivate: bool = False


def next_step(
    outcome: Outcome,
    *,
    attempts: int,
    now: datetime,
    expires_at: datetime | None,
    policy: BackoffPolicy,
    rng: random.Random,
) -> Step:
    """``attempts`` counts the call just made. A retry that would land after expiry is not made."""
    detail = f"{outcome.reason}: {outcome.detail}" if outcome.detail else outcome.reason
    if outcome.status is Status.SENT:
        return Step(Action.SENT)
    if outcome.status is Status.PERMANENT:
        return Step(Action.DEAD_LETTER, outcome.reason, detail, deactivate=outcome.deactivate_target)
    if policy.exhausted(attempts):
        return Step(Action.DEAD_LETTER, "attempts_exhausted", f"{attempts} attempts; last: {detail}")
    at = now + timedelta(seconds=policy.delay(attempts, outcome.retry_after_s, rng))
    if expires_at is not None and at >= expires_at:
        return Step(Action.DEAD_LETTER, "expired", f"expires before the next attempt; last: {detail}")
    return Step(Action.RETRY, outcome.reason, detail, not_before=at)

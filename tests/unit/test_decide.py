from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from consumers.delivery.backoff import BackoffPolicy
from consumers.delivery.decide import Action, next_step
from consumers.delivery.outcome import Outcome

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = BackoffPolicy(base_s=1, max_s=60, max_attempts=3)


@pytest.mark.parametrize(
    ("outcome", "attempts", "expires_at", "action", "error_type", "deactivate"),
    [
        (Outcome.sent("m-1"), 1, None, Action.SENT, "", False),
        (Outcome.sent("m-1"), 3, None, Action.SENT, "", False),
        (Outcome.retry("TooManyRequests"), 1, None, Action.RETRY, "TooManyRequests", False),
        (Outcome.retry("450"), 2, None, Action.RETRY, "450", False),
        (Outcome.retry("450"), 3, None, Action.DEAD_LETTER, "attempts_exhausted", False),
        (
            Outcome.retry("UNAVAILABLE"),
            1,
            NOW + timedelta(milliseconds=1),
            Action.DEAD_LETTER,
            "expired",
            False,
        ),
        (
            Outcome.permanent("BadDeviceToken", deactivate_target=True),
            1,
            None,
            Action.DEAD_LETTER,
            "BadDeviceToken",
            True,
        ),
        (Outcome.permanent("552"), 1, None, Action.DEAD_LETTER, "552", False),
    ],
)
def test_next_step_from_outcome(
    outcome: Outcome,
    attempts: int,
    expires_at: datetime | None,
    action: Action,
    error_type: str,
    deactivate: bool,
) -> None:
    step = next_step(
        outcome, attempts=attempts, now=NOW, expires_at=expires_at, policy=POLICY, rng=random.Random(1)
    )
    assert (step.action, step.error_type, step.deactivate) == (action, error_type, deactivate)


def test_a_retry_is_scheduled_no_sooner_than_retry_after() -> None:
    step = next_step(
        Outcome.retry("QUOTA_EXCEEDED", retry_after_s=30),
        attempts=1,
        now=NOW,
        expires_at=None,
        policy=POLICY,
        rng=random.Random(7),
    )
    assert step.action is Action.RETRY
    assert step.not_before is not None
    assert step.not_before >= NOW + timedelta(seconds=30)


def test_retries_spread_within_the_backoff_window() -> None:
    times = {
        next_step(
            Outcome.retry("503"), attempts=2, now=NOW, expires_at=None, policy=POLICY, rng=random.Random(s)
        ).not_before
        for s in range(50)
    }
    assert len(times) > 40
    assert all(t is not None and NOW <= t <= NOW + timedelta(seconds=2) for t in times)

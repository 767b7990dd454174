"""Backoff grows exponentially within its cap, jitters, and never undercuts Retry-After."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.delivery.backoff import BackoffPolicy

POLICY = BackoffPolicy(base_s=1.0, factor=2.0, max_s=60.0, max_attempts=5)


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=2**32))
def test_delay_stays_within_the_exponential_ceiling(attempt: int, seed: int) -> None:
    delay = POLICY.delay(attempt, None, random.Random(seed))
    assert 0 <= delay <= min(60.0, 2 ** (attempt - 1))


@given(st.integers(min_value=1, max_value=10), st.floats(min_value=0, max_value=200), st.integers(0, 2**32))
def test_retry_after_is_a_floor_up_to_the_policy_maximum(attempt: int, retry_after: float, seed: int) -> None:
    """A provider's Retry-After is honoured, but a huge one is clamped to the policy's maximum."""
    delay = POLICY.delay(attempt, retry_after, random.Random(seed))
    assert delay >= min(retry_after, POLICY.max_s)
    assert delay <= POLICY.max_s


def test_a_far_future_retry_after_waits_no_longer_than_the_maximum() -> None:
    """A Retry-After of a year (or a date in year 9000) parks the delivery for max_s, not a year."""
    assert POLICY.delay(1, 365 * 86_400.0, random.Random(1)) == POLICY.max_s


def test_jitter_spreads_delays() -> None:
    rng = random.Random(7)
    delays = {round(POLICY.delay(5, None, rng), 6) for _ in range(50)}
    assert len(delays) > 40


def test_attempt_budget() -> None:
    assert not POLICY.exhausted(4)
    assert POLICY.exhausted(5)
    with pytest.raises(ValueError, match="from 1"):
        POLICY.delay(0, None, random.Random(1))

"""The API's per-key token buckets (api/rate_limit.py): refill, burst, Retry-After, the IETF
RateLimit / RateLimit-Policy header strings, a cost above the burst, and one bucket per key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api import rate_limit
from api.rate_limit import RateLimiter, TokenBucket, Verdict


def test_a_full_bucket_allows_the_burst_then_refuses() -> None:
    """A new bucket holds ``burst`` units: that many calls pass at once, counting down, and the
    next one is refused with nothing left."""
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    verdicts = [bucket.take(1, 0.0) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]


def test_the_bucket_refills_at_the_rate_and_never_above_the_burst() -> None:
    """Empty at t=0 with 2 units/s: half a second buys one unit, not two; an hour idle refills it to
    the burst and no further."""
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert bucket.take(3, 0.0).allowed
    assert bucket.take(1, 0.5).allowed
    assert not bucket.take(1, 0.5).allowed
    after_an_hour = bucket.take(1, 3600.5)
    assert (after_an_hour.allowed, after_an_hour.remaining) == (True, 2)
    assert [bucket.take(1, 3600.5).allowed for _ in range(3)] == [True, True, False]


def test_retry_after_is_the_whole_seconds_until_the_missing_units_are_back() -> None:
    """At 0.5 units/s an empty bucket needs 2 s for one unit: Retry-After 2; with half a unit
    already back, 1 s. It is never below 1, and 0 when the call is allowed."""
    bucket = TokenBucket(rate=0.5, burst=3, now=0.0)
    assert bucket.take(3, 0.0).retry_after_s == 0
    assert bucket.take(1, 0.0).retry_after_s == 2
    assert bucket.take(1, 1.0).retry_after_s == 1
    fast = TokenBucket(rate=1000.0, burst=1, now=0.0)
    fast.take(1, 0.0)
    assert fast.take(1, 0.0).retry_after_s == 1


def test_header_strings_follow_the_ietf_draft() -> None:
    """RateLimit-Policy is "default";q=<burst>;w=<burst / rate, rounded up>; RateLimit is
    "default";r=<whole units left>;t=<seconds until full, rounded up>; only a refusal carries
    Retry-After."""
    bucket = TokenBucket(rate=0.5, burst=3, now=0.0)
    allowed = bucket.take(1, 0.0).headers()
    assert allowed == {"RateLimit-Policy": '"default";q=3;w=6', "RateLimit": '"default";r=2;t=2'}
    bucket.take(2, 0.0)
    refused = bucket.take(1, 0.0).headers()
    assert refused == {
        "RateLimit-Policy": '"default";q=3;w=6',
        "RateLimit": '"default";r=0;t=6',
        "Retry-After": "2",
    }
    quick = TokenBucket(rate=1000.0, burst=10, now=0.0).take(1, 0.0)
    assert quick.window_s == 1  # 10 units at 1000/s take 0.01 s: the window is at least one second


def test_a_cost_above_the_burst_is_charged_as_the_burst() -> None:
    """A batch of 50 against a burst of 5 passes from a full bucket and empties it (instead of
    being refused for ever); the next one waits for the whole bucket, burst / rate seconds."""
    bucket = TokenBucket(rate=2.0, burst=5, now=0.0)
    first = bucket.take(50, 0.0)
    assert (first.allowed, first.remaining) == (True, 0)
    second = bucket.take(50, 0.0)
    assert (second.allowed, second.retry_after_s) == (False, 3)  # 5 units at 2/s: 2.5 s, rounded up
    assert bucket.take(50, 2.5).allowed


def test_a_cost_below_one_is_charged_as_one() -> None:
    """A zero or negative cost still takes one unit: no call is free."""
    bucket = TokenBucket(rate=1.0, burst=2, now=0.0)
    assert bucket.take(0, 0.0).remaining == 1
    assert bucket.take(-5, 0.0).remaining == 0
    assert not bucket.take(0, 0.0).allowed


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_bucket_needs_a_positive_rate_and_a_burst_of_one(rate: float, burst: int) -> None:
    """A rate of zero or less, or a burst below one, is refused when the bucket is made."""
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(rate, burst, 0.0)


def test_the_limiter_keeps_one_bucket_per_key_with_the_keys_own_rate() -> None:
    """Two keys do not share units; a key without its own rate gets the defaults; a key whose rate
    changed gets a fresh bucket at the new rate."""
    limiter = RateLimiter(default_rate=1.0, default_burst=2)
    assert [limiter.take("a", 1, 0.0, None, None).allowed for _ in range(3)] == [True, True, False]
    assert limiter.take("b", 1, 0.0, None, None).allowed
    assert limiter.take("a", 1, 0.0, None, None).quota == 2
    changed = limiter.take("a", 1, 0.0, 10.0, 20)
    assert (changed.allowed, changed.quota, changed.remaining) == (True, 20, 19)


def test_the_limiter_forgets_the_least_recently_used_key_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_BUCKETS keys the least recently used bucket goes; a key used again is kept, and a
    forgotten key starts over with a full bucket."""
    monkeypatch.setattr(rate_limit, "MAX_BUCKETS", 2)
    limiter = RateLimiter(default_rate=0.001, default_burst=1)
    limiter.take("a", 1, 0.0, None, None)
    limiter.take("b", 1, 0.0, None, None)
    assert not limiter.take("a", 1, 0.0, None, None).allowed  # "a" is now the most recent
    limiter.take("c", 1, 0.0, None, None)  # evicts "b"
    assert not limiter.take("a", 1, 0.0, None, None).allowed
    assert limiter.take("b", 1, 0.0, None, None).allowed


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(
    rate=st.floats(0.01, 10_000),
    burst=st.integers(1, 10_000),
    steps=st.lists(st.tuples(st.integers(-3, 20_000), st.floats(0, 100)), min_size=1, max_size=20),
)
def test_waiting_retry_after_is_always_enough(
    rate: float, burst: int, steps: list[tuple[int, float]]
) -> None:
    """For any rate, burst and sequence of (cost, pause): what is left stays within 0..burst, a
    refusal says to wait at least a second, and the same call made once that wait is over (plus a
    microsecond, below which float time arithmetic cannot promise anything) is allowed."""
    now = 0.0
    bucket = TokenBucket(rate, burst, now)
    for cost, pause in steps:
        now += pause
        verdict: Verdict = bucket.take(cost, now)
        assert 0 <= verdict.remaining <= burst
        assert verdict.quota == burst
        if not verdict.allowed:
            assert verdict.retry_after_s >= 1
            now += verdict.retry_after_s + 1e-6
            assert bucket.take(cost, now).allowed

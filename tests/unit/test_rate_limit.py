from __future__ import annotations

import pytest

from consumers.delivery.rate_limit import TokenBucket
from consumers.delivery.worker import send_rate
from notify_core.settings import Settings
from notify_core.topics import Channel


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.wait_time() for _ in range(3)] == [0, 0, 0]
    assert bucket.wait_time() == pytest.approx(0.1)
    clock.now += 0.1
    assert bucket.wait_time() == 0
    clock.now += 10  # refills only up to the burst size
    assert [bucket.wait_time() for _ in range(3)] == [0, 0, 0]
    assert bucket.wait_time() > 0


def test_rate_zero_is_unlimited() -> None:
    bucket = TokenBucket(rate=0)
    assert all(bucket.wait_time() == 0 for _ in range(10_000))


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=-1)


@pytest.mark.asyncio
async def test_acquire_paces_real_calls() -> None:
    bucket = TokenBucket(rate=200, burst=1)
    for _ in range(5):
        await bucket.acquire()
    assert bucket.wait_time() > 0


def test_each_channel_has_its_own_rate_and_sms_is_always_paced() -> None:
    settings = Settings(rate_limit_ios=5, rate_limit_android=6, rate_limit_email=7, sms_max_per_second=8)
    rates = {channel: send_rate(settings, channel) for channel in Channel}
    assert rates == {Channel.IOS: 5, Channel.ANDROID: 6, Channel.SMS: 8, Channel.EMAIL: 7}
    defaults = Settings()
    assert (send_rate(defaults, Channel.SMS), send_rate(defaults, Channel.IOS)) == (20, 0)


@pytest.mark.asyncio
async def test_acquire_says_how_long_it_waited() -> None:
    """The worker's rate-limit wait metrics: 0.0 with a token at hand, the time paced otherwise."""
    assert await TokenBucket(rate=0).acquire() == 0.0
    bucket = TokenBucket(rate=100, burst=1)
    assert await bucket.acquire() == 0.0
    waited = await bucket.acquire()
    assert 0.005 < waited < 1.0

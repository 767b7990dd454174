"""When a retry-tier record is due, and where a retry copy goes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.delivery.retry_wait import counts_as_busy, due_at, tier_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def test_a_record_is_due_at_its_not_before_when_that_is_within_its_tier() -> None:
    """An honest retry copy waits exactly as long as it asked."""
    at = NOW + timedelta(seconds=7)
    assert due_at(at, NOW_MS, 10, NOW) == at


def test_a_far_future_not_before_waits_one_tier_from_when_it_was_written() -> None:
    """A crafted year-9000 retry blocks its partition for one tier's delay, not for ever."""
    far = datetime(9000, 1, 1, tzinfo=UTC)
    written = NOW_MS - 4_000
    assert due_at(far, written, 10, NOW) == NOW + timedelta(seconds=6)
    assert due_at(far, NOW_MS - 60_000, 10, NOW) == NOW - timedelta(seconds=50)  # long overdue: now


def test_a_record_without_a_due_time_or_from_the_future_is_bounded_too() -> None:
    """No not_before means now; a write time after now (clock skew) counts as now."""
    assert due_at(None, NOW_MS, 300, NOW) == NOW
    skewed = NOW_MS + 3_600_000
    assert due_at(datetime(9000, 1, 1, tzinfo=UTC), skewed, 1, NOW) == NOW + timedelta(seconds=1)


def test_a_copy_goes_to_the_smallest_tier_covering_its_wait() -> None:
    """1 s, 10 s, 60 s, 300 s tiers; anything longer lands in the largest."""
    waits = {0.5: 1, 3: 10, 45: 60, 200: 300, 86_400: 300}
    assert {w: tier_for(NOW + timedelta(seconds=w), NOW) for w in waits} == waits


def test_burst_mode_waits_only_for_retries_due_within_an_idle_period() -> None:
    """A paused partition due soon is work; one due much later counts as idle."""
    assert counts_as_busy(NOW + timedelta(seconds=1), NOW, 2.0)
    assert not counts_as_busy(NOW + timedelta(seconds=300), NOW, 2.0)

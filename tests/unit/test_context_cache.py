"""The user-context cache: a read that raced an invalidation never caches what it read before it."""

from __future__ import annotations

import pytest

from notify_core.userdata.context_cache import ContextCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_read_without_a_concurrent_invalidation_is_cached_until_its_ttl() -> None:
    """The common case is unchanged: fetched rows are cached, and expire after the TTL."""
    clock = Clock()
    cache: ContextCache[str, str] = ContextCache(10, ttl_s=60, clock=clock)
    ticket = cache.ticket()
    assert cache.put_fetched(ticket, {"u1": "ctx-1", "u2": "ctx-2"}) == set()
    assert (cache.get("u1"), cache.get("u2")) == ("ctx-1", "ctx-2")
    clock.now = 60.0
    assert cache.get("u1") is None


def test_a_read_that_started_before_an_invalidation_does_not_cache_the_stale_row() -> None:
    """The classic race: read starts, the change commits and is invalidated, the read stores its old
    rows. The invalidated user's row is not cached (the caller still gets it), the others are."""
    cache: ContextCache[str, str] = ContextCache(10, ttl_s=60, clock=Clock())
    ticket = cache.ticket()  # the read of PostgreSQL starts here...
    cache.invalidate("u1")  # ...u1 opts out meanwhile, and the change record arrives
    refused = cache.put_fetched(ticket, {"u1": "opted-in (stale)", "u2": "ctx-2"})
    assert refused == {"u1"}
    assert cache.get("u1") is None  # the next read goes to PostgreSQL and sees the opt-out
    assert cache.get("u2") == "ctx-2"


def test_a_read_that_started_after_the_invalidation_is_cached() -> None:
    """An invalidation only blocks reads that were already under way when it happened."""
    cache: ContextCache[str, str] = ContextCache(10, ttl_s=60, clock=Clock())
    cache.put_fetched(cache.ticket(), {"u1": "old"})
    cache.invalidate("u1")
    assert cache.get("u1") is None
    assert cache.put_fetched(cache.ticket(), {"u1": "new"}) == set()
    assert cache.get("u1") == "new"


def test_invalidating_a_cached_row_drops_it_at_once() -> None:
    """An invalidated user is gone from the cache at once, not when its TTL ends."""
    cache: ContextCache[str, str] = ContextCache(10, ttl_s=60, clock=Clock())
    cache.put_fetched(cache.ticket(), {"u1": "ctx"})
    cache.invalidate("u1")
    assert cache.get("u1") is None
    assert len(cache) == 0


def test_when_the_tracked_invalidations_are_forgotten_older_reads_cache_nothing() -> None:
    """The memory of invalidations is bounded; once it is reset, a read older than the reset cannot
    tell whom it missed, so it stores nothing (safe), while reads taken after the reset cache again."""
    cache: ContextCache[str, str] = ContextCache(10, ttl_s=60, clock=Clock(), max_tracked=2)
    old = cache.ticket()
    cache.invalidate("a")
    cache.invalidate("b")
    cache.invalidate("c")  # the third tracked key: the first two are forgotten
    assert cache.put_fetched(old, {"a": "stale", "z": "fine but unprovable"}) == {"a", "z"}
    assert cache.get("z") is None
    fresh = cache.ticket()
    assert cache.put_fetched(fresh, {"a": "new", "z": "ctx"}) == set()
    after_reset = cache.ticket()
    cache.invalidate("c")
    assert cache.put_fetched(after_reset, {"c": "stale", "a": "ok"}) == {"c"}


def test_max_tracked_must_be_positive() -> None:
    """A cache that could track no invalidation at all is refused when built."""
    with pytest.raises(ValueError, match="max_tracked"):
        ContextCache(10, ttl_s=60, max_tracked=0)

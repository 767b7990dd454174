"""The read-through cache: bounded, expiring, invalidated on demand."""

from __future__ import annotations

import pytest

from notify_core.db.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_hit_miss_and_expiry() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, ttl_s=5, clock=clock)
    assert cache.get("a") is None
    cache.put("a", 1)
    assert cache.get("a") == 1
    clock.now = 4.9
    assert cache.get("a") == 1
    clock.now = 5.0
    assert cache.get("a") is None
    assert (cache.hits, cache.misses) == (2, 2)


def test_least_recently_used_is_evicted() -> None:
    cache: TtlCache[str, int] = TtlCache(2, ttl_s=60, clock=Clock())
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)
    assert cache.get("b") is None
    assert cache.get("a") == 1
    assert len(cache) == 2


def test_invalidate_and_zero_size() -> None:
    cache: TtlCache[str, int] = TtlCache(2, ttl_s=60, clock=Clock())
    cache.put("a", 1)
    cache.invalidate("a")
    assert cache.get("a") is None
    off: TtlCache[str, int] = TtlCache(0, ttl_s=60)
    off.put("a", 1)
    assert off.get("a") is None
    with pytest.raises(ValueError, match="negative"):
        TtlCache(-1, 1)

"""The user-context cache: a ``TtlCache`` that a read racing an invalidation cannot refill with stale rows.

The race it closes: a read of PostgreSQL starts, a change commits and is invalidated (by this
process's own write, or by a change record from another process), then the read stores what it saw
before the change, and that stale context would be served until its TTL. So a reader takes a
``ticket()`` before it reads, and ``put_fetched(ticket, rows)`` stores only the rows of users that no
invalidation touched since that ticket; the others are returned to the caller but not cached.

Every invalidation bumps one epoch and remembers, per key, the epoch of its latest invalidation
(bounded: when ``max_tracked`` keys are remembered they are all forgotten at once, and a ticket
older than that moment stores nothing, which is always safe). Pure: no I/O, the clock injected;
one lock makes "check the epochs, then store" atomic with respect to "bump the epoch, then drop".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

from notify_core.db.cache import TtlCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
DEFAULT_MAX_TRACKED = 10_000


class ContextCache(Generic[K, V]):
    def __init__(
        self,
        max_size: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self._cache: TtlCache[K, V] = TtlCache(max_size, ttl_s, clock)
        self._lock = threading.Lock()
        self._epoch = 0
        self._invalidated: dict[K, int] = {}  # key -> epoch of its latest invalidation
        self._floor = 0  # invalidations up to this epoch are forgotten: older tickets store nothing
        self._max_tracked = max_tracked

    def get(self, key: K) -> V | None:
        return self._cache.get(key)

    def ticket(self) -> int:
        """Take one before reading what ``put_fetched`` will store."""
        with self._lock:
            return self._epoch

    def put_fetched(self, ticket: int, items: Mapping[K, V]) -> set[K]:
        """Cache the items whose key was not invalidated since ``ticket``; returns the keys left out."""
        with self._lock:
            if ticket < self._floor:
                return set(items)
            refused = {key for key in items if self._invalidated.get(key, 0) > ticket}
            for key, value in items.items():
                if key not in refused:
                    self._cache.put(key, value)
            return refused

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._epoch += 1
            if len(self._invalidated) >= self._max_tracked:
                self._invalidated.clear()
                self._floor = self._epoch - 1
            self._invalidated[key] = self._epoch
            self._cache.invalidate(key)

    def __len__(self) -> int:
        return len(self._cache)

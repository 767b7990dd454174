"""A token bucket for provider calls: ``await bucket.acquire()`` before each call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second, bursts of up to ``burst``; a rate of 0 means unlimited.

    Waiters are served in arrival order (one lock), so a burst of senders cannot starve an early one.
    """

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._clock = clock
        self._updated = clock()
        self._lock = asyncio.Lock()

    def wait_time(self) -> float:
        """Seconds until one token is available (0 when one is there now); takes it when 0."""
        if self.rate == 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1 - 1e-9:  # float refill steps must not leave a token just short
            self._tokens = max(0.0, self._tokens - 1)
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> float:
        """Take a token; the seconds spent waiting for it (behind earlier waiters too), 0.0 if none."""
        if self.rate == 0:
            return 0.0
        queued = self._lock.locked()
        began = self._clock()
        async with self._lock:
            delay = self.wait_time()
            waited = queued or delay > 0
            while delay > 0:  # pacing by time: there is no event to wait for
                await asyncio.sleep(delay)
                delay = self.wait_time()
        return self._clock() - began if waited else 0.0

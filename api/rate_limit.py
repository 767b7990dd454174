"""Per-key token buckets, and the IETF ``RateLimit`` / ``RateLimit-Policy`` headers (pure).

Headers follow draft-ietf-httpapi-ratelimit-headers (-08 and later): ``RateLimit-Policy:
"default";q=<quota>;w=<window s>`` and ``RateLimit: "default";r=<remaining>;t=<s until full>``.
The bucket holds ``burst`` units and refills at ``rate`` units a second, so its policy is
``burst`` units per ``burst / rate`` seconds. The clock is passed in.

Buckets live in the API process: with N API processes a key may get up to N times its rate
(the README says so).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_BUCKETS = 100_000  # one per live key; the least recently used go first


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    remaining: int
    retry_after_s: int  # 0 when allowed
    reset_s: int  # seconds until the bucket is full again
    quota: int
    window_s: int

    def headers(self) -> dict[str, str]:
        out = {
            "RateLimit-Policy": f'"default";q={self.quota};w={self.window_s}',
            "RateLimit": f'"default";r={self.remaining};t={self.reset_s}',
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_s)
        return out


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst = rate, burst
        self._tokens, self._at = float(burst), now

    def take(self, cost: int, now: float) -> Verdict:
        """Take ``cost`` units if there are enough. A cost above ``burst`` is charged as ``burst``,
        so one large call is possible (it empties the bucket) instead of refused for ever."""
        cost = min(max(cost, 1), self.burst)
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        allowed = self._tokens >= cost
        if allowed:
            self._tokens -= cost
        missing = 0.0 if allowed else cost - self._tokens
        return Verdict(
            allowed=allowed,
            remaining=int(self._tokens),
            retry_after_s=max(1, math.ceil(missing / self.rate)) if not allowed else 0,
            reset_s=math.ceil((self.burst - self._tokens) / self.rate),
            quota=self.burst,
            window_s=max(1, math.ceil(self.burst / self.rate)),
        )


class RateLimiter:
    """One bucket per key id, made on first use with the key's own rate or the defaults."""

    def __init__(self, default_rate: float, default_burst: int) -> None:
        self._default = (default_rate, default_burst)
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key_id: str, cost: int, now: float, rate: float | None, burst: int | None) -> Verdict:
        rate, burst = rate or self._default[0], burst or self._default[1]
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
                bucket = TokenBucket(rate, burst, now)
                self._buckets[key_id] = bucket
            self._buckets.move_to_end(key_id)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
            return bucket.take(cost, now)

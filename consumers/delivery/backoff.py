"""When to try a failed delivery again (pure): exponential backoff with full jitter, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 300.0
    max_attempts: int = 6  # attempts in all, the first included

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1).

        Full jitter spreads a burst of failures over the whole window instead of retrying them in
        lock-step; a provider's Retry-After is a floor, never shortened by jitter, but clamped to
        ``max_s``: a huge or far-future one must not park the delivery for days.
        """
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        ceiling = min(self.max_s, self.base_s * self.factor ** (attempt - 1))
        jittered = rng.uniform(0, ceiling)
        if retry_after_s is not None:
            return max(jittered, min(retry_after_s, self.max_s))
        return jittered

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts

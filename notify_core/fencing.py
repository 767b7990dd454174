"""How often a process may rebuild a consumer that librdkafka declared fatally failed (pure).

After a broker outage a static group member can be fenced by its own rejoin (the coordinator
replaced its member id while an old request was in flight): rebuilding the consumer under the same
``group.instance.id`` is the way back. A rebuild that keeps being needed means another live
process shares the identity, and then the process must stop with a clear error instead of
fencing its twin back and forth.
"""

from __future__ import annotations

from collections import deque

from notify_core.exceptions import ConfigError


class RebuildBudget:
    def __init__(self, *, limit: int = 3, window_s: float = 300.0) -> None:
        self._limit, self._window_s = limit, window_s
        self._at: deque[float] = deque()

    def spend(self, now: float, what: str) -> None:
        """Record one rebuild at ``now``; ``ConfigError`` once they come too often."""
        while self._at and now - self._at[0] > self._window_s:
            self._at.popleft()
        if len(self._at) >= self._limit:
            raise ConfigError(
                f"{what} was fenced {self._limit + 1} times within {self._window_s:g}s: another live"
                " process uses the same instance id; give each process its own"
            )
        self._at.append(now)

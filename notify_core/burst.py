"""Burst mode's stop rule, shared by the router and the channel workers (pure; the loops feed it).

A consumer loop in burst mode stops once it has been idle for ``idle_s`` *while holding partitions*.
Counting idle time from start-up instead would let a slow group join (seconds on a busy machine) use
up the whole idle budget, and the loop would stop the moment its partitions arrive, before the first
fetch. So the idle clock restarts when the assignment is first seen, unless records consumed since
start already proved the partitions were ours (the usual case, which then costs no extra wait).
"""

from __future__ import annotations


class BurstStop:
    def __init__(self, idle_s: float, now: float) -> None:
        self.idle_s = idle_s
        self._last_activity = now
        self._had_partitions = False

    def activity(self, now: float, *, consumed: bool = False) -> None:
        """Not idle: records were ``consumed`` (so partitions are ours), work is in flight, or the like."""
        self._last_activity = now
        if consumed:
            self._had_partitions = True

    def idle(self, now: float) -> bool:
        """Idle for ``idle_s``: time to look at the assignment (``should_stop``)."""
        return now - self._last_activity > self.idle_s

    def should_stop(self, now: float, *, has_partitions: bool) -> bool:
        """Call when ``idle``: stop only if the partitions were already ours a whole idle period ago."""
        if has_partitions and self._had_partitions:
            return True
        self._had_partitions = has_partitions
        self._last_activity = now  # idle counts from the moment the partitions are ours
        return False

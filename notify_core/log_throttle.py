"""Throttling for log lines that repeat while a condition lasts (a broker down, a refused connection).

``LogThrottle`` is pure: the clock is injected, it does no I/O and no locking. It tracks one state per
key (e.g. ``(client, error code, broker)``):

* the first occurrence of a key is let through in full: the state changed, that is news;
* repeats are counted, and at most one line per ``interval_s`` stands for them
  ("repeated N times in the last 60 s");
* ``resolve`` ends matching conditions once the caller knows they are over, returning one ``Recovery``
  per key so the caller can log the recovery once; the next occurrence is a first occurrence again.

The caller decides what a key is, how a line is rendered and what proves a recovery.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_INTERVAL_S = 60.0
# Bounded so a process that builds many short-lived keys cannot grow the table without limit.
DEFAULT_MAX_KEYS = 256


@dataclass(frozen=True)
class Emit:
    """Log this occurrence. ``count`` is the number of occurrences this line stands for (this one
    included) over the last ``window_s``; ``first`` marks the start of a condition (``count == 1``)."""

    first: bool
    count: int
    window_s: float

    def summary(self) -> str:
        """The suffix for a repeat line, e.g. ``repeated 12 times in the last 60 s``."""
        return f"repeated {self.count} times in the last {self.window_s:.0f} s"


@dataclass(frozen=True)
class Recovery(Generic[K]):
    """A condition that is over: it lasted ``duration_s`` and occurred ``occurrences`` times in all,
    ``unreported`` of them after the last line that was let through."""

    key: K
    occurrences: int
    unreported: int
    duration_s: float


@dataclass
class _State:
    started: float  # first occurrence of the current condition
    last_emitted: float  # when a line for this key was last let through
    occurrences: int  # since ``started``
    suppressed: int  # since ``last_emitted``


class LogThrottle(Generic[K]):
    """First occurrence in full, then one summary per ``interval_s`` at most, then one recovery."""

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        self._interval_s = interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._states: OrderedDict[K, _State] = OrderedDict()

    def admit(self, key: K) -> Emit | None:
        """Record one occurrence of ``key``: what to log for it, or ``None`` to drop it."""
        now = self._clock()
        state = self._states.get(key)
        if state is None:
            self._states[key] = _State(started=now, last_emitted=now, occurrences=1, suppressed=0)
            if len(self._states) > self._max_keys:
                self._states.popitem(last=False)  # least recently seen
            return Emit(first=True, count=1, window_s=0.0)
        self._states.move_to_end(key)
        state.occurrences += 1
        window = now - state.last_emitted
        if window < self._interval_s:
            state.suppressed += 1
            return None
        emit = Emit(first=False, count=state.suppressed + 1, window_s=window)
        state.last_emitted = now
        state.suppressed = 0
        return emit

    def resolve(self, is_over: Callable[[K], bool]) -> list[Recovery[K]]:
        """End every open condition whose key ``is_over``; one ``Recovery`` for each."""
        now = self._clock()
        over = [key for key in self._states if is_over(key)]
        recoveries = []
        for key in over:
            state = self._states.pop(key)
            recoveries.append(Recovery(key, state.occurrences, state.suppressed, now - state.started))
        return recoveries

    def open_keys(self) -> list[K]:
        """The keys whose condition has not been resolved, least recently seen first."""
        return list(self._states)

    def __bool__(self) -> bool:
        """Whether any condition is open: lets a caller skip work (e.g. parsing stats) when none is."""
        return bool(self._states)

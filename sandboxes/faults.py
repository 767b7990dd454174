"""What every sandbox shares: the record of what arrived, and the plan of injected failures.

``FaultPlan`` is pure and thread-safe: a sandbox asks ``plan.pick(target)`` for each request and
answers with the returned error name (provider-specific, e.g. ``"BadDeviceToken"``,
``"QUOTA_EXCEEDED"``, ``"450"``), or succeeds when it returns ``None``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request a sandbox accepted (successful or not)."""

    target: str
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    answered: str = "ok"  # "ok", or the injected error name
    at: float = field(default_factory=time.time)


@dataclass
class Fault:
    error: str
    target: str | None = None  # exact target, or None for any
    prefix: str | None = None  # target prefix, or None for any
    remaining: int | None = None  # answer this many times, then heal; None = until removed
    until: float | None = None  # wall-clock end of the window; None = no end

    def matches(self, target: str, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.target is not None and target != self.target:
            return False
        return self.prefix is None or target.startswith(self.prefix)


class FaultPlan:
    """Injected failures, first match wins. ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._clock = clock

    def add(
        self,
        error: str,
        *,
        target: str | None = None,
        prefix: str | None = None,
        times: int | None = None,
        for_seconds: float | None = None,
    ) -> None:
        until = self._clock() + for_seconds if for_seconds is not None else None
        with self._lock:
            self._faults.append(Fault(error, target, prefix, times, until))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pick(self, target: str) -> str | None:
        now = self._clock()
        with self._lock:
            for fault in self._faults:
                if fault.matches(target, now):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault.error
        return None


class Recorder:
    """Thread-safe list of what arrived."""

    def __init__(self) -> None:
        self._items: list[Received] = []
        self._lock = threading.Lock()

    def add(self, item: Received) -> None:
        with self._lock:
            self._items.append(item)

    def all(self) -> list[Received]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def delivered(self) -> list[Received]:
        return [r for r in self.all() if r.answered == "ok"]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

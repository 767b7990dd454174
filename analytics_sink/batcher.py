"""Per-partition buffers of decoded events and when to flush them (pure; the clock is injected).

Each partition assigned to the sink has a buffer of the records read since its last flush: a decoded
event with its offset, or just the offset of a record that does not land (it was dead-lettered), so
that a flush's range ``[first, last]`` covers every offset it consumed. A buffer is closed at exactly
``flush_rows`` records (the next record opens another), so a replay of the same offsets cuts the
same ranges. ``due`` names the partitions to flush now: those holding a full buffer, or whose oldest
record has waited ``flush_s`` (so a quiet topic still lands within that time). ``take`` hands a
partition's oldest buffer over as a ``FlushUnit``, its events grouped by date; ``revoke`` drops the
buffers of partitions that moved to another consumer (their new owner reads them again from the
committed offset).

A record at or before the last offset already buffered or taken for its partition is refused: it was
fetched before the consumer was moved (a seek), and is already held.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from analytics_sink.columns import Entry
from analytics_sink.layout import event_date

Where = tuple[str, int]  # (topic, partition)
Reason = Literal["rows", "age", "final"]


@dataclass(frozen=True)
class FlushUnit:
    """One partition's records ``first..last``: the events to land, grouped by UTC date."""

    topic: str
    partition: int
    first: int
    last: int
    by_date: dict[date, list[Entry]]
    records: int  # every record in the range, landing or not
    reason: Reason

    @property
    def where(self) -> Where:
        return (self.topic, self.partition)

    @property
    def rows(self) -> int:
        return sum(len(entries) for entries in self.by_date.values())


@dataclass
class _Buffer:
    since: float  # when its oldest record was added
    first: int
    last: int
    records: int = 0
    by_date: dict[date, list[Entry]] = field(default_factory=dict)


@dataclass
class _Partition:
    full: deque[_Buffer] = field(default_factory=deque)  # exactly flush_rows records each
    open: _Buffer | None = None

    @property
    def since(self) -> float:
        oldest = self.full[0] if self.full else self.open
        return oldest.since if oldest is not None else float("inf")

    @property
    def records(self) -> int:
        return sum(b.records for b in self.full) + (self.open.records if self.open else 0)


class Batcher:
    def __init__(
        self, *, flush_rows: int, flush_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if flush_rows < 1 or flush_s <= 0:
            raise ValueError("flush_rows must be >= 1 and flush_s > 0")
        self.flush_rows, self.flush_s, self._clock = flush_rows, flush_s, clock
        self._partitions: dict[Where, _Partition] = {}
        self._next: dict[Where, int] = {}  # the offset after the last one buffered or taken

    def add(self, topic: str, partition: int, offset: int, event: Mapping[str, Any] | None) -> bool:
        """Buffer one record (``event`` None: it does not land); False when it is already held."""
        where = (topic, partition)
        if offset < self._next.get(where, 0):
            return False
        self._next[where] = offset + 1
        state = self._partitions.setdefault(where, _Partition())
        buffer = state.open
        if buffer is None:
            buffer = state.open = _Buffer(since=self._clock(), first=offset, last=offset)
        buffer.last = offset
        buffer.records += 1
        if event is not None:
            buffer.by_date.setdefault(event_date(event["occurred_at"]), []).append((offset, event))
        if buffer.records >= self.flush_rows:
            state.full.append(buffer)  # cut at exactly flush_rows: a replay cuts at the same offsets
            state.open = None
        return True

    def due(self, now: float | None = None) -> dict[Where, Reason]:
        """The partitions to flush now, and why (oldest buffer first)."""
        at = self._clock() if now is None else now
        ready: dict[Where, Reason] = {}
        for where in self.buffered():
            state = self._partitions[where]
            if state.full:
                ready[where] = "rows"
            elif at - state.since >= self.flush_s:
                ready[where] = "age"
        return ready

    def take(self, where: Where, reason: Reason) -> FlushUnit | None:
        """The partition's oldest buffer as a flush unit (a full one says ``rows`` whatever the
        reason asked), or None when it holds nothing; that buffer is emptied."""
        state = self._partitions.get(where)
        if state is None:
            return None
        if state.full:
            buffer, reason = state.full.popleft(), "rows"
        elif state.open is not None:
            buffer, state.open = state.open, None
        else:
            return None
        if not state.full and state.open is None:
            del self._partitions[where]
        return FlushUnit(
            where[0], where[1], buffer.first, buffer.last, buffer.by_date, buffer.records, reason
        )

    def revoke(self, wheres: Iterable[Where]) -> int:
        """Forget these partitions (buffers and positions); returns how many records were dropped."""
        dropped = 0
        for where in wheres:
            state = self._partitions.pop(where, None)
            dropped += state.records if state is not None else 0
            self._next.pop(where, None)
        return dropped

    def buffered(self) -> list[Where]:
        """Partitions holding records, oldest buffer first."""
        return [w for w, _ in sorted(self._partitions.items(), key=lambda item: item[1].since)]

    def next_offset(self, where: Where) -> int | None:
        """The offset after the last one buffered or taken for ``where`` (None: nothing seen)."""
        return self._next.get(where)

    def __len__(self) -> int:
        return sum(state.records for state in self._partitions.values())

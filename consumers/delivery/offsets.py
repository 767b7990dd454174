"""Which offsets may be committed when many deliveries of one partition are in flight (pure).

A worker starts deliveries in offset order but they finish in any order. Committing offset N means
"everything before N is done", so only the contiguous completed prefix may be committed: a slow
delivery at offset 5 holds the commit at 5 even when 6..100 are done. After a crash those are
redelivered, and the delivery log keeps them from being sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PartitionTracker:
    """In-flight offsets of one partition; offsets must be started in increasing order."""

    pending: set[int] = field(default_factory=set)
    highest: int | None = None

    def start(self, offset: int) -> None:
        if self.highest is not None and offset <= self.highest:
            raise ValueError(f"offset {offset} started after {self.highest}: starts must increase")
        self.pending.add(offset)
        self.highest = offset

    def finish(self, offset: int) -> None:
        self.pending.discard(offset)

    def commit_offset(self) -> int | None:
        """The offset to commit: the oldest still in flight, or one past the newest when all are done."""
        if self.pending:
            return min(self.pending)
        return None if self.highest is None else self.highest + 1


class OffsetTracker:
    """Trackers per (topic, partition); ``committable()`` gives what advanced since the last call."""

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], PartitionTracker] = {}
        self._committed: dict[tuple[str, int], int] = {}

    def start(self, topic: str, partition: int, offset: int) -> None:
        self._partitions.setdefault((topic, partition), PartitionTracker()).start(offset)

    def finish(self, topic: str, partition: int, offset: int) -> None:
        tracker = self._partitions.get((topic, partition))
        if tracker is not None:
            tracker.finish(offset)

    def committable(self) -> dict[tuple[str, int], int]:
        ready: dict[tuple[str, int], int] = {}
        for where, tracker in self._partitions.items():
            offset = tracker.commit_offset()
            if offset is not None and offset != self._committed.get(where):
                ready[where] = offset
        self._committed.update(ready)
        return ready

    def forget(self, topic: str, partition: int) -> None:
        """The partition was revoked: what is in flight there is no longer ours to commit."""
        self._partitions.pop((topic, partition), None)
        self._committed.pop((topic, partition), None)

    def partitions(self) -> list[tuple[str, int]]:
        return list(self._partitions)

    @property
    def in_flight(self) -> int:
        return sum(len(t.pending) for t in self._partitions.values())

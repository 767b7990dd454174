"""Consumer lag and its status: pure values and Burrow's evaluation rules, no Kafka here.

A ``GroupSample`` is one look at a group: per partition the committed offset, the log end offset (the
high watermark, as Kafka's own consumer-groups tool shows it), the lag in messages and the age of
the oldest unconsumed message. ``evaluate`` turns a sliding window of samples (oldest first) into a
status, after Burrow's rules (github.com/linkedin/Burrow/wiki/Consumer-Lag-Evaluation-Rules):

- STOPPED: the group has no members and lag > 0 (nobody will ever consume it);
- per partition, over the window:
  - OK when the lag was 0 at any sample (it caught up at least once);
  - STALLED when the committed offset did not move while lag > 0;
  - WARNING when the offset moved but the lag never shrank and grew across the window;
  - OK otherwise;
- the group takes its worst partition's status.

A window of one sample can only say OK or STOPPED: movement needs two looks.

Lag counts offsets, as Kafka's tool does, and a transactional producer's commit marker takes an
offset: a consumer that read everything of a partition whose last entry is a marker stays one
behind until the next record comes. Such a partition has nothing ``waiting``; nor has a retry
topic whose oldest record is not due yet (it waits out its tier on purpose). The status goes by
what waits, so an idle pipeline is OK, not STOPPED by its markers, and a 300 s retry is not a stall.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum


class Status(IntEnum):
    """Ordered by severity; the value is what the Prometheus gauge shows."""

    OK = 0
    WARNING = 1
    STALLED = 2
    STOPPED = 3


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing here (Kafka's tool shows "-")
    log_end: int
    # Seconds since the oldest unconsumed message was written; 0 with no lag; None when unknown.
    age_s: float | None = None
    # Only transaction markers lie between the committed offset and the end: no record waits.
    markers_only: bool = False
    # A retry topic whose oldest unconsumed record is not due yet: it waits on purpose.
    not_due: bool = False

    @property
    def lag(self) -> int | None:
        if self.committed is None:
            return None
        return max(self.log_end - self.committed, 0)

    @property
    def waiting(self) -> int | None:
        """The lag, but 0 when nothing is left to consume yet (only markers, or a retry not due)."""
        return 0 if self.markers_only or self.not_due else self.lag


@dataclass(frozen=True)
class GroupSample:
    group: str
    at: float  # wall-clock seconds of the look
    members: int
    state: str  # the coordinator's view: Stable, Empty, PreparingRebalance, Dead, ...
    partitions: tuple[PartitionLag, ...] = ()

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    @property
    def total_waiting(self) -> int:
        return sum(p.waiting or 0 for p in self.partitions)

    @property
    def max_age_s(self) -> float:
        return max((p.age_s or 0.0 for p in self.partitions), default=0.0)

    def partition(self, topic: str, partition: int) -> PartitionLag | None:
        for p in self.partitions:
            if p.topic == topic and p.partition == partition:
                return p
        return None


def partition_status(history: Sequence[PartitionLag]) -> Status:
    """Burrow's per-partition rules over one partition's looks, oldest first."""
    known = [p for p in history if p.waiting is not None]
    if not known or any(p.waiting == 0 for p in known):
        return Status.OK
    if len(known) < 2:
        return Status.OK
    lags = [p.waiting or 0 for p in known]
    if known[0].committed == known[-1].committed:
        return Status.STALLED
    never_shrank = all(later >= earlier for earlier, later in itertools.pairwise(lags))
    if never_shrank and lags[-1] > lags[0]:
        return Status.WARNING
    return Status.OK


def evaluate(window: Sequence[GroupSample]) -> Status:
    """The group's status over ``window`` (oldest first); OK for an empty window."""
    if not window:
        return Status.OK
    latest = window[-1]
    if latest.members == 0 and latest.total_waiting > 0:
        return Status.STOPPED
    worst = Status.OK
    for current in latest.partitions:
        history = [p for s in window if (p := s.partition(current.topic, current.partition)) is not None]
        worst = max(worst, partition_status(history))
    return worst


@dataclass
class LagWindow:
    """The last ``size`` samples of each group: the state ``notify lag --watch`` and the exporter keep."""

    size: int
    samples: dict[str, deque[GroupSample]] = field(default_factory=dict)

    def add(self, sample: GroupSample) -> Status:
        window = self.samples.setdefault(sample.group, deque(maxlen=self.size))
        window.append(sample)
        return evaluate(window)

    def status(self, group: str) -> Status:
        return evaluate(self.samples.get(group, ()))


@dataclass(frozen=True)
class GroupReport:
    """One group as ``notify lag`` shows it: the latest look and the window's status."""

    sample: GroupSample
    status: Status

    def as_dict(self) -> dict[str, object]:
        s = self.sample
        return {
            "group": s.group,
            "status": self.status.name,
            "state": s.state,
            "members": s.members,
            "total_lag": s.total_lag,
            "total_waiting": s.total_waiting,
            "max_lag_seconds": round(s.max_age_s, 3),
            "at": s.at,
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed_offset": p.committed,
                    "log_end_offset": p.log_end,
                    "lag": p.lag,
                    "waiting": p.waiting,
                    "lag_seconds": None if p.age_s is None else round(p.age_s, 3),
                }
                for p in s.partitions
            ],
        }


def reports(window: LagWindow, groups: Iterable[str]) -> list[GroupReport]:
    """The latest sample and status of each of ``groups`` that has been sampled."""
    return [
        GroupReport(samples[-1], evaluate(samples))
        for group in groups
        if (samples := window.samples.get(group))
    ]

"""Only the contiguous completed prefix of a partition is ever committed."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.delivery.offsets import OffsetTracker, PartitionTracker


def test_commit_waits_for_the_oldest_delivery() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.start("t", 0, offset)
    tracker.finish("t", 0, 11)
    tracker.finish("t", 0, 12)
    assert tracker.committable() == {("t", 0): 10}
    tracker.finish("t", 0, 10)
    assert tracker.committable() == {("t", 0): 13}
    assert tracker.committable() == {}  # nothing new since
    assert tracker.in_flight == 0


def test_partitions_are_independent_and_revocation_forgets() -> None:
    tracker = OffsetTracker()
    tracker.start("t", 0, 5)
    tracker.start("t", 1, 7)
    tracker.finish("t", 1, 7)
    assert tracker.committable() == {("t", 0): 5, ("t", 1): 8}
    tracker.forget("t", 0)
    tracker.finish("t", 0, 5)  # late completion of a revoked partition: ignored
    assert tracker.committable() == {}
    assert tracker.in_flight == 0


def test_starts_must_increase() -> None:
    tracker = PartitionTracker()
    tracker.start(3)
    with pytest.raises(ValueError, match="increase"):
        tracker.start(3)


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=60, unique=True), st.randoms()
)
def test_commit_offset_never_passes_an_unfinished_delivery(offsets: list[int], rng: random.Random) -> None:
    """Property: whatever the finishing order, the committed offset is <= every pending offset."""
    offsets.sort()
    tracker = PartitionTracker()
    for offset in offsets:
        tracker.start(offset)
    order = list(offsets)
    rng.shuffle(order)
    for i, offset in enumerate(order):
        tracker.finish(offset)
        committed = tracker.commit_offset()
        assert committed is not None
        unfinished = set(order[i + 1 :])
        assert all(committed <= p for p in unfinished)
    assert tracker.commit_offset() == offsets[-1] + 1

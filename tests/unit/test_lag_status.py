"""Burrow's evaluation rules, as ``notify_core.lag`` applies them to a window of looks."""

from __future__ import annotations

import pytest

from notify_core.lag import GroupReport, GroupSample, LagWindow, PartitionLag, Status, evaluate
from notify_core.topics import retry_delay_s


def look(at: float, *offsets: tuple[int | None, int], members: int = 1) -> GroupSample:
    """A sample with one partition per (committed, log end) pair."""
    partitions = tuple(
        PartitionLag("t", i, committed, log_end, age_s=0.0) for i, (committed, log_end) in enumerate(offsets)
    )
    return GroupSample("g", at, members, "Stable" if members else "Empty", partitions)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ([], Status.OK),
        ([look(0, (10, 10))], Status.OK),
        ([look(0, (10, 20))], Status.OK),  # one look cannot tell movement
        ([look(0, (10, 20)), look(1, (10, 25))], Status.STALLED),  # offsets still, lag > 0
        ([look(0, (10, 20)), look(1, (10, 20))], Status.STALLED),
        ([look(0, (10, 20)), look(1, (15, 30)), look(2, (20, 40))], Status.WARNING),  # moving, lag grows
        ([look(0, (10, 20)), look(1, (15, 25)), look(2, (20, 30))], Status.OK),  # moving, lag steady
        ([look(0, (10, 20)), look(1, (15, 40)), look(2, (39, 40))], Status.OK),  # lag shrank at the end
        ([look(0, (10, 20)), look(1, (20, 20)), look(2, (20, 30))], Status.OK),  # caught up once: rule 1
        ([look(0, (10, 20), members=0)], Status.STOPPED),
        ([look(0, (20, 20), members=0)], Status.OK),  # nobody there, but nothing waits either
        ([look(0, (None, 20))], Status.OK),  # no commit: no lag known (Kafka's tool shows "-")
    ],
)
def test_a_window_gets_burrows_status(window: list[GroupSample], expected: Status) -> None:
    """Each rule in turn: zero lag at any look is OK; still offsets with lag are STALLED; moving offsets
    with a lag that never shrinks and grows are WARNING; no members with lag is STOPPED."""
    assert evaluate(window) == expected


def test_the_group_takes_its_worst_partition() -> None:
    """One stalled partition among healthy ones makes the group STALLED."""
    window = [look(0, (10, 10), (5, 9)), look(1, (12, 12), (5, 9))]
    assert evaluate(window) == Status.STALLED


def test_the_sliding_window_forgets_old_looks() -> None:
    """A stall that has moved on leaves the window: only the last ``size`` looks count."""
    window = LagWindow(size=2)
    assert window.add(look(0, (10, 20))) == Status.OK
    assert window.add(look(1, (10, 20))) == Status.STALLED
    assert window.add(look(2, (15, 25))) == Status.OK  # (10,20) dropped; (10,20)->(15,25) moving, steady


def test_lag_and_totals_as_reported() -> None:
    """Lag is log end minus committed, never negative; totals sum lags and take the oldest age."""
    sample = GroupSample(
        "g",
        0,
        1,
        "Stable",
        (PartitionLag("t", 0, 5, 9, 3.5), PartitionLag("t", 1, 9, 7, 0.0), PartitionLag("t", 2, None, 4)),
    )
    assert [p.lag for p in sample.partitions] == [4, 0, None]
    report = GroupReport(sample, Status.OK).as_dict()
    assert (report["total_lag"], report["max_lag_seconds"], report["status"]) == (4, 3.5, "OK")


def test_a_retry_not_due_and_trailing_markers_wait_for_nothing() -> None:
    """A retry topic whose oldest record waits out its tier, or a partition with only transaction
    markers left, has nothing waiting: a group idle but for them is OK, never STALLED or STOPPED."""
    resting = PartitionLag("p.ios.retry.300s", 0, 10, 12, age_s=0.0, not_due=True)
    marked = PartitionLag("p.ios", 0, 41, 42, age_s=None, markers_only=True)
    window = [GroupSample("g", at, members, "Empty", (resting, marked)) for at, members in ((0, 1), (1, 0))]
    assert [p.waiting for p in (resting, marked)] == [0, 0]
    assert window[-1].total_lag == 3
    assert evaluate(window) == Status.OK


@pytest.mark.parametrize(
    ("topic", "delay"),
    [("notifications.ios.retry.300s", 300), ("t-1.sms.retry.1s", 1), ("notifications.ios", None)],
)
def test_a_retry_topics_delay_comes_from_its_name(topic: str, delay: int | None) -> None:
    """The lag probe measures a retry's age from when it is due: its tier's delay is in the name."""
    assert retry_delay_s(topic) == delay

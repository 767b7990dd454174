"""The sink's per-partition buffers: when a partition is flushed, and what a flush holds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from analytics_sink.batcher import Batcher

T = "p.events"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ev(day: int, hour: int = 12) -> dict[str, Any]:
    return {"event_id": f"e-{day}-{hour}", "occurred_at": datetime(2026, 1, day, hour, tzinfo=UTC)}


def test_a_partition_is_due_once_it_holds_flush_rows_records() -> None:
    """Row count: due at flush_rows records, not before; other partitions are not."""
    batcher = Batcher(flush_rows=3, flush_s=60, clock=Clock())
    for offset in range(2):
        batcher.add(T, 0, offset, ev(1))
    batcher.add(T, 1, 0, ev(1))
    assert batcher.due() == {}
    batcher.add(T, 0, 2, ev(1))
    assert batcher.due() == {(T, 0): "rows"}


def test_buffers_are_cut_at_exactly_flush_rows_records() -> None:
    """Records past flush_rows open the next buffer, so a flush holds exactly flush_rows records and
    a replay of the same offsets cuts the same ranges; the last, partial buffer waits for its age."""
    batcher = Batcher(flush_rows=3, flush_s=60, clock=Clock())
    for offset in range(7):
        batcher.add(T, 0, offset, ev(1) if offset != 4 else None)
    ranges = []
    while (T, 0) in batcher.due():
        unit = batcher.take((T, 0), "rows")
        assert unit is not None
        ranges.append((unit.first, unit.last, unit.records, unit.rows))
    assert ranges == [(0, 2, 3, 3), (3, 5, 3, 2)]
    assert len(batcher) == 1
    last = batcher.take((T, 0), "final")
    assert last is not None
    assert (last.first, last.last, last.reason) == (6, 6, "final")


def test_a_quiet_partition_is_due_once_its_oldest_record_waited_flush_s() -> None:
    """Age: counted from the oldest buffered record, so a topic that goes quiet still lands."""
    clock = Clock()
    batcher = Batcher(flush_rows=1000, flush_s=60, clock=clock)
    batcher.add(T, 0, 0, ev(1))
    clock.now += 30
    batcher.add(T, 0, 1, ev(1))
    batcher.add(T, 1, 0, ev(1))
    clock.now += 29.9
    assert batcher.due() == {}
    clock.now += 0.1
    assert batcher.due() == {(T, 0): "age"}
    assert batcher.due(clock.now + 30) == {(T, 0): "age", (T, 1): "age"}


def test_a_flush_covers_its_whole_range_with_events_grouped_by_date() -> None:
    """``take`` gives first and last offsets (dead-lettered records included in the range, with no
    row), the events per UTC date in offset order, and empties the buffer."""
    batcher = Batcher(flush_rows=10, flush_s=60, clock=Clock())
    batcher.add(T, 2, 40, ev(1, 23))
    batcher.add(T, 2, 41, None)  # dead-lettered
    batcher.add(T, 2, 42, ev(2, 0))
    batcher.add(T, 2, 44, ev(1, 1))  # 43 was a transaction marker
    unit = batcher.take((T, 2), "final")
    assert unit is not None
    assert (unit.topic, unit.partition, unit.first, unit.last) == (T, 2, 40, 44)
    assert (unit.records, unit.rows, unit.reason) == (4, 3, "final")
    assert {day: [offset for offset, _ in entries] for day, entries in unit.by_date.items()} == {
        date(2026, 1, 1): [40, 44],
        date(2026, 1, 2): [42],
    }
    assert batcher.take((T, 2), "final") is None
    assert len(batcher) == 0


def test_dates_are_utc_dates_whatever_the_writers_zone() -> None:
    """An event at 23:30 in UTC-5 is already the next day in UTC, and lands there."""
    from datetime import timedelta, timezone

    batcher = Batcher(flush_rows=10, flush_s=60, clock=Clock())
    batcher.add(T, 0, 0, {"occurred_at": datetime(2026, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))})
    unit = batcher.take((T, 0), "final")
    assert unit is not None
    assert list(unit.by_date) == [date(2026, 1, 2)]


def test_a_record_already_held_is_refused() -> None:
    """A record at or before the last offset buffered or flushed is one read twice (fetched before a
    seek): it is not buffered again."""
    batcher = Batcher(flush_rows=10, flush_s=60, clock=Clock())
    assert batcher.add(T, 0, 5, ev(1))
    assert not batcher.add(T, 0, 5, ev(1))
    batcher.take((T, 0), "rows")
    assert not batcher.add(T, 0, 4, ev(1))
    assert batcher.add(T, 0, 6, ev(1))
    assert batcher.next_offset((T, 0)) == 7


def test_revocation_drops_the_buffers_and_positions_of_those_partitions_only() -> None:
    """Revoked partitions forget everything (their new owner reads them from the committed offset,
    and so may we, later); the others keep their buffers."""
    batcher = Batcher(flush_rows=10, flush_s=60, clock=Clock())
    for offset in range(3):
        batcher.add(T, 0, offset, ev(1))
        batcher.add(T, 1, offset, ev(1))
    assert batcher.revoke([(T, 0), (T, 9)]) == 3
    assert batcher.buffered() == [(T, 1)]
    assert batcher.next_offset((T, 0)) is None
    assert batcher.add(T, 0, 0, ev(1))  # reassigned later: read again from the committed offset


def test_bad_limits_are_refused() -> None:
    """A batcher with ``flush_rows`` below 1 is refused with a ValueError naming the limit."""
    with pytest.raises(ValueError, match="flush_rows"):
        Batcher(flush_rows=0, flush_s=60)

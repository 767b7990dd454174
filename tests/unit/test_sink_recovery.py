"""A flush interrupted at any point and replayed leaves no duplicate and no missing row.

Runs the sink's own write and recovery (``analytics_sink.flush``) on a real directory, stopping the
write after each object in turn, as a crash would, then recovering with what Kafka would have
committed and writing the replay. No Kafka here: the integration crash test kills a real process.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
import pytest

from analytics_sink import flush
from analytics_sink.batcher import Batcher
from analytics_sink.columns import event_schema
from analytics_sink.exceptions import StoreUnavailable
from analytics_sink.layout import parse_file_key
from analytics_sink.store import LocalStore
from notify_core.codec import EVENT, default_codec
from notify_core.events import event

T = "p.events"


class CrashingStore(LocalStore):
    """A real directory that fails every put after the first ``puts`` ones (a crash mid-flush)."""

    def __init__(self, root: Path, puts: int) -> None:
        super().__init__(root)
        self.left = puts

    def put(self, key: str, data: bytes) -> None:
        if self.left <= 0:
            raise StoreUnavailable("crashed", key=key)
        self.left -= 1
        super().put(key, data)


def events(count: int) -> list[dict[str, Any]]:
    codec = default_codec()
    out = []
    for i in range(count):
        raw = event(
            "SENT", occurred_at=datetime(2026, 1, 1 + i % 4, tzinfo=UTC), notification_id=f"n{i}", user_id="u"
        )
        out.append(codec.decode(codec.encode(EVENT, raw), EVENT))
    return out


def flush_plan(batch: list[dict[str, Any]], first: int) -> flush.FlushPlan:
    batcher = Batcher(flush_rows=10**6, flush_s=60)
    for i, row in enumerate(batch):
        batcher.add(T, 0, first + i, row)
    unit = batcher.take((T, 0), "rows")
    assert unit is not None
    return flush.plan(unit, event_schema(), schema_version=2)


def landed(root: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for path in root.rglob("*.parquet"):
        if path.name.startswith("."):
            continue
        ids.update(pq.read_table(path).column("event_id").to_pylist())
    return ids


@pytest.mark.parametrize("puts", range(6))  # the manifest, then 4 date files, then the commit
def test_a_flush_cut_short_and_replayed_with_another_range_lands_every_row_once(
    tmp_path: Path, puts: int
) -> None:
    """Offsets 0-9 are committed; the flush of 10-29 (4 dates) crashes after ``puts`` objects (5:
    all written, the commit never made). On restart Kafka says 10 is next: recovery deletes what the
    crashed flush wrote, and the replay, cut differently (10-11 reach only 2 of the 4 dates, then
    12-29), lands each event exactly once: no file of the crashed flush is left behind."""
    rows = events(30)
    store = LocalStore(tmp_path)
    flush.write(store, flush_plan(rows[:10], 0))  # committed: next offset 10
    with contextlib.suppress(StoreUnavailable):
        flush.write(CrashingStore(tmp_path, puts), flush_plan(rows[10:], 10))
    deleted = flush.recover(store, T, 0, committed=10)
    assert len(deleted) == (4 if puts >= 1 else 0)
    assert {parse_file_key(key).first for key in deleted if parse_file_key(key)} <= {10}  # type: ignore[union-attr]
    replay = flush_plan(rows[10:12], 10)
    assert len(replay.files) == 2
    flush.write(store, replay)
    flush.write(store, flush_plan(rows[12:], 12))
    assert landed(tmp_path) == Counter(r["event_id"] for r in rows)


def test_a_committed_flush_is_never_deleted(tmp_path: Path) -> None:
    """A crash after the commit: the manifest's first offset is before the committed one, so
    recovery keeps its files."""
    rows = events(8)
    store = LocalStore(tmp_path)
    flush.write(store, flush_plan(rows, 0))
    assert flush.recover(store, T, 0, committed=8) == ()
    assert landed(tmp_path) == Counter(r["event_id"] for r in rows)


def test_each_file_says_its_range_and_schema_version_and_holds_no_date_column(tmp_path: Path) -> None:
    """Each written file's Parquet metadata names its first and last offset, topic and event schema
    version, and it has no ``date`` column (the date is in its path)."""
    store = LocalStore(tmp_path)
    plan = flush_plan(events(5), 70)
    flush.write(store, plan)
    [first_key, *_] = plan.files
    meta = pq.read_schema(tmp_path / first_key).metadata
    assert meta[b"notify.first_offset"] == b"70"
    assert meta[b"notify.last_offset"] == b"74"
    assert meta[b"notify.topic"] == T.encode()
    assert meta[b"notify.event_schema"] == b"notification_event.v2"
    assert "date" not in pq.read_schema(tmp_path / first_key).names


def test_the_local_store_puts_whole_objects_and_lists_no_temporary_files(tmp_path: Path) -> None:
    """A put replaces the key in one rename; a temporary file left by a crash is not listed; get of
    a missing key is None and deleting it is no error; keys cannot climb out of the root."""
    store = LocalStore(tmp_path / "out")
    store.put("date=2026-01-01/a.parquet", b"one")
    store.put("date=2026-01-01/a.parquet", b"two")
    (tmp_path / "out" / "date=2026-01-01" / ".b.parquet.tmp").write_bytes(b"half")
    assert store.get("date=2026-01-01/a.parquet") == b"two"
    assert store.list() == ["date=2026-01-01/a.parquet"]
    assert store.list("_manifests/") == []
    assert store.get("nope") is None
    store.delete("nope")
    store.delete("date=2026-01-01/a.parquet")
    assert store.list() == []
    with pytest.raises(ValueError, match="relative"):
        store.put("../escape", b"x")

"""The sink's object names: the contract ``notify report`` and the data team read by."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from analytics_sink.layout import FileName, event_date, file_key, manifest_key, parse_file_key
from analytics_sink.manifest import Manifest, stale_files
from notify_core.settings import Settings
from notify_core.topics import TopicNames, topic_specs


def test_a_file_is_named_by_date_topic_partition_and_its_flushs_first_offset() -> None:
    """``date=YYYY-MM-DD/<topic>+<partition>+<first offset, 20 digits>.parquet``, so names sort by
    offset and a replay from the same first offset writes the same name."""
    key = file_key(date(2026, 1, 2), "notifications.events", 3, 1500)
    assert key == "date=2026-01-02/notifications.events+3+00000000000000001500.parquet"
    assert file_key(date(2026, 1, 2), "notifications.events", 3, 2**63 - 1).endswith(
        "+3+09223372036854775807.parquet"
    )
    assert manifest_key("notifications.events", 3) == "_manifests/notifications.events+3.json"


def test_a_file_key_parses_back_and_anything_else_is_not_a_data_file() -> None:
    """A data file's key parses back to its name; a manifest, a temporary file, an impossible date
    and an unpadded offset are not data files."""
    name = FileName(date(2026, 1, 2), "t-1.events", 0, 42)
    assert parse_file_key(name.key) == name
    for other in (
        "_manifests/t-1.events+0.json",
        "date=2026-01-02/.t-1.events+0+00000000000000000042.parquet.tmp",
        "date=2026-02-30/t-1.events+0+00000000000000000042.parquet",
        "date=2026-01-02/t-1.events+0+42.parquet",
    ):
        assert parse_file_key(other) is None, other


def test_names_refuse_what_a_kafka_topic_cannot_be() -> None:
    """``+`` and ``/`` cannot occur in a topic name, so the parts of a name never run together."""
    with pytest.raises(ValueError, match="topic"):
        file_key(date(2026, 1, 1), "a+b", 0, 0)
    with pytest.raises(ValueError, match="negative"):
        file_key(date(2026, 1, 1), "a", -1, 0)


def test_the_date_partition_is_the_utc_date_of_occurred_at() -> None:
    """An event's date partition is the UTC date of ``occurred_at``; a naive time is taken as UTC."""
    assert event_date(datetime(2026, 1, 1, 23, 59, tzinfo=UTC)) == date(2026, 1, 1)
    assert event_date(datetime(2026, 1, 1, 20, 0, tzinfo=timezone(timedelta(hours=-5)))) == date(2026, 1, 2)
    assert event_date(datetime(2026, 1, 1, 20, 0)) == date(2026, 1, 1)  # naive: already UTC


def test_a_manifest_round_trips_and_says_when_its_flush_was_never_committed() -> None:
    """Its files are stale exactly when the group's committed offset is at or before its first
    offset (or nothing is committed at all); a committed flush (first < committed) is kept."""
    manifest = Manifest("t.events", 1, 100, 199, ("date=2026-01-01/a", "date=2026-01-02/b"))
    assert Manifest.from_bytes(manifest.to_bytes()) == manifest
    assert stale_files(manifest, None) == manifest.files
    assert stale_files(manifest, 100) == manifest.files
    assert stale_files(manifest, 50) == manifest.files  # an offset reset back: not ours to keep
    assert stale_files(manifest, 101) == ()
    assert stale_files(manifest, 200) == ()
    assert stale_files(None, 0) == ()


def test_the_events_dead_letter_topic_exists_with_dead_letter_retention() -> None:
    """``<prefix>.events.dlq`` is one of the topics ``notify topics apply`` creates, kept as long as
    the other dead-letter topics."""
    names = TopicNames("notifications")
    assert names.events_dlq == "notifications.events.dlq"
    assert names.events_dlq in names.all()
    specs = {s.name: s for s in topic_specs(Settings(dlq_retention_ms=2000, events_retention_ms=3000))}
    assert specs["notifications.events.dlq"].config["retention.ms"] == "2000"
    assert specs["notifications.events"].config["retention.ms"] == "3000"

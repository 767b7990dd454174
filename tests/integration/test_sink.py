"""The analytics sink on the real broker: every event lands in Parquet exactly once, local and on S3."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from analytics_sink import flusher
from analytics_sink.columns import event_schema
from analytics_sink.layout import event_date, parse_file_key
from analytics_sink.sink import Sink
from notify_core.codec import DEAD_LETTER, default_codec
from notify_core.exceptions import ConfigError
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import topic_names
from tests.pipeline import Process, wait_for_members
from tests.sink_harness import committed, local_files, moto_s3, produce, rows, spread_events

pytestmark = pytest.mark.integration

GARBAGE = [b"not avro at all", b"\xc3\x01" + b"\x00" * 8 + b"unknown fingerprint"]


def sink_settings(settings: Settings, output: str, **overrides: Any) -> Settings:
    update = {"sink_group": f"sink-{uuid.uuid4().hex[:8]}", "sink_output": output, **overrides}
    return settings.model_copy(update=update)


def check_landed(found: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Each event exactly once, in the partition of its UTC date, with the columns of the newest schema."""
    counts = Counter(row["event_id"] for row in found)
    assert [e for e, n in counts.items() if n > 1] == []
    assert set(counts) == {e["event_id"] for e in expected}
    by_id = {e["event_id"]: e for e in expected}
    for row in found:
        name = parse_file_key(row["_key"])
        assert name is not None
        assert name.day == event_date(by_id[row["event_id"]]["occurred_at"])
        assert row["occurred_at"] == by_id[row["event_id"]]["occurred_at"]
    assert len({(row["_partition"], row["_offset"]) for row in found}) == len(found)


def test_events_land_once_by_date_with_every_column_and_garbage_goes_to_the_dlq(
    settings: Settings, tmp_path: Path
) -> None:
    """3,000 events over 4 dates (half written with schema v1) and two undecodable records: every
    event lands once, in its date partition, with the newest schema's columns (v1 events have NULL
    in v2's); the garbage is dead-lettered with the reason and its offsets committed all the same."""
    settings = sink_settings(settings, str(tmp_path / "out"), sink_flush_rows=700)
    events = spread_events(3000, days=4)
    produce(settings, events[:1500], version=1)
    produce(settings, [], garbage=GARBAGE)
    produce(settings, events[1500:])
    started = time.monotonic()
    stats = Sink(settings).run(stop_when_idle=True, idle_s=2.0)
    elapsed = time.monotonic() - started

    files = local_files(tmp_path / "out")
    found = rows(files)
    check_landed(found, events)
    assert (stats.records, stats.rows, stats.dead_letters) == (3002, 3000, 2)
    assert stats.flushes["rows"] >= 3, stats  # 1,000 per partition: at least one row-count flush each
    assert {parse_file_key(k).day.isoformat() for k in files} == {  # type: ignore[union-attr]
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
        "2026-03-04",
    }
    names = event_schema().names
    assert all(list(row)[:-1] == names for row in found)  # the file's columns, then our _key
    v1_ids = {e["event_id"] for e in events[:1500]}
    assert all(row["template_id"] is None for row in found if row["event_id"] in v1_ids)
    assert committed(settings, settings.sink_group) == 3002

    codec = default_codec()
    letters = [
        codec.decode(r.value or b"", DEAD_LETTER)
        for r in read_records(settings, topic_names(settings).events_dlq, max_records=10, timeout_s=30)
    ]
    assert sorted(letter["payload"] for letter in letters) == sorted(GARBAGE)
    assert {(letter["error_type"], letter["stage"]) for letter in letters} == {("decode_error", "sink")}
    assert {letter["source_topic"] for letter in letters} == {topic_names(settings).events}
    assert elapsed < 30


def test_a_quiet_topic_lands_within_the_flush_age(settings: Settings, tmp_path: Path) -> None:
    """Five events, far fewer than flush_rows: they are written (and committed) once the oldest has
    waited sink_flush_s, while the sink keeps running."""
    settings = sink_settings(settings, str(tmp_path / "out"), sink_flush_rows=10_000, sink_flush_s=1.0)
    sink = Sink(settings)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(sink.run()), daemon=True)
    thread.start()
    try:
        events = spread_events(5, days=1)
        produce(settings, events)
        deadline = time.monotonic() + 30
        while sink.stats.flushes["age"] == 0 or sink.stats.rows < 5:
            assert thread.is_alive()
            assert time.monotonic() < deadline, "no age flush"
            time.sleep(0.1)
        assert thread.is_alive()  # landed by age, not by the flush on stopping
        check_landed(rows(local_files(tmp_path / "out")), events)
        assert committed(settings, settings.sink_group) == 5
    finally:
        sink.stop()
        thread.join(30)
    assert [stats.flushes["final"] for stats in result] == [0]


def test_sigterm_flushes_what_is_buffered_commits_and_exits_0(settings: Settings, tmp_path: Path) -> None:
    """`notify sink run` (not burst) holding 400 buffered events, far below its flush size and age,
    flushes and commits them on SIGTERM and exits 0."""
    settings = sink_settings(settings, str(tmp_path / "out"))
    events = spread_events(400, days=2)
    # All on one partition, then a record that does not decode: once its dead letter is on the DLQ,
    # the sink has read every event before it.
    produce(settings, events, garbage=[b"beacon"], partition=0)
    env = {
        "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFY_SINK_GROUP": settings.sink_group,
        "NOTIFY_SINK_OUTPUT": str(tmp_path / "out"),
        "NOTIFY_SINK_FLUSH_ROWS": "100000",
        "NOTIFY_SINK_FLUSH_S": "3600",
    }
    sink = Process(["sink", "run"], env, tmp_path / "sink.log")
    try:
        deadline = time.monotonic() + 60
        while not read_records(settings, topic_names(settings).events_dlq, max_records=1, timeout_s=10):
            assert sink.alive(), sink.tail()
            assert time.monotonic() < deadline, sink.tail()
            time.sleep(0.2)
        assert local_files(tmp_path / "out") == {}  # nothing due yet
    finally:
        code = sink.stop(timeout_s=60)
    assert code == 0, sink.tail()
    check_landed(rows(local_files(tmp_path / "out")), events)
    assert committed(settings, settings.sink_group) == 401


def test_events_land_once_on_s3(settings: Settings) -> None:
    """The same on moto's S3 in server mode: s3://bucket/prefix, every event once, by date."""
    with moto_s3() as s3:
        bucket = s3.bucket()
        settings = sink_settings(
            settings,
            f"s3://{bucket}/analytics/events",
            sink_flush_rows=400,
            s3_endpoint=s3.endpoint,
        )
        events = spread_events(1200, days=3)
        produce(settings, events, garbage=GARBAGE[:1])
        stats = Sink(settings).run(stop_when_idle=True, idle_s=2.0)
        found = rows(s3.files(bucket, "analytics/events"))
        check_landed(found, events)
        assert stats.dead_letters == 1
        manifests = s3.client.list_objects_v2(Bucket=bucket, Prefix="analytics/events/_manifests/")
        assert len(manifests.get("Contents", [])) == settings.topic_partitions
        assert committed(settings, settings.sink_group) == 1201


def test_an_s3_outage_is_waited_out_and_nothing_is_lost_or_doubled(settings: Settings) -> None:
    """S3 goes away while 6,000 events arrive: the flush fails, nothing is committed, the sink backs
    off and tries the same flush again, and it stops consuming: every partition with a due buffer is
    paused, so at most two buffers (2 x flush_rows) per partition are read, not the whole backlog.
    Once S3 is back every partition resumes and every event lands exactly once."""
    flush_rows = 200
    with moto_s3() as s3:
        bucket = s3.bucket()
        settings = sink_settings(
            settings,
            f"s3://{bucket}/ev",
            sink_flush_rows=flush_rows,
            sink_flush_s=1.0,
            s3_endpoint=s3.endpoint,
        )
        sink = Sink(settings)
        thread = threading.Thread(target=sink.run, daemon=True)
        thread.start()
        events = spread_events(6000, days=2)
        bound = 2 * flush_rows * settings.topic_partitions
        try:
            with s3.down():
                produce(settings, events)
                deadline = time.monotonic() + 30
                while sink.stats.failed_attempts < 3:
                    assert thread.is_alive()
                    assert time.monotonic() < deadline, "no write was attempted"
                    time.sleep(0.1)
                consumed = sink.stats.records
                time.sleep(2.0)
                assert sink.stats.records == consumed, "still consuming during the outage"
                assert 0 < consumed <= bound, (consumed, bound)
                assert committed(settings, settings.sink_group) == 0
            deadline = time.monotonic() + 90
            while sink.stats.rows < len(events):
                assert thread.is_alive()
                assert time.monotonic() < deadline, f"not recovered: {sink.stats}"
                time.sleep(0.1)
        finally:
            sink.stop()
            thread.join(60)
        check_landed(rows(s3.files(bucket, "ev")), events)
        assert committed(settings, settings.sink_group) == len(events)
        assert sink.output.outages >= 1


def test_a_sink_before_run_reports_healthy_output_and_broker(settings: Settings, tmp_path: Path) -> None:
    """``output`` and ``broker`` are readable before ``run``: no outage seen yet, not an AttributeError."""
    sink = Sink(sink_settings(settings, str(tmp_path / "out")))
    assert (sink.output.outages, sink.broker.outages) == (0, 0)


def test_a_missing_dead_letter_topic_stops_the_sink_at_start_up(settings: Settings, tmp_path: Path) -> None:
    """With no ``<prefix>.events.dlq`` on the broker the sink refuses to start, with a ConfigError
    naming the topic and ``notify topics apply``, instead of retrying a dead letter for ever."""
    missing = settings.model_copy(update={"topic_prefix": f"t-missing-{uuid.uuid4().hex[:8]}"})
    sink = Sink(sink_settings(missing, str(tmp_path / "out")))
    with pytest.raises(ConfigError, match=r"events\.dlq does not exist: run `notify topics apply`"):
        sink.run(stop_when_idle=True, idle_s=1.0)


def test_with_no_time_budget_each_step_flushes_one_partition_and_all_still_lands(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step past its time budget returns to the consume loop after the flush under way, but always
    makes that one attempt: with a budget of 0 (each step stops after one flush) the sink still lands
    every event exactly once and commits every offset."""
    monkeypatch.setattr(flusher, "STEP_BUDGET_S", 0.0)
    settings = sink_settings(settings, str(tmp_path / "out"), sink_flush_rows=100)
    events = spread_events(1200, days=2)
    produce(settings, events)
    stats = Sink(settings).run(stop_when_idle=True, idle_s=2.0)
    check_landed(rows(local_files(tmp_path / "out")), events)
    assert stats.flushes["rows"] >= 12 - settings.topic_partitions, stats
    assert committed(settings, settings.sink_group) == len(events)


def test_two_sinks_share_the_partitions_and_one_leaving_hands_them_over(
    settings: Settings, tmp_path: Path
) -> None:
    """Two sinks in one group split the partitions; when one stops mid-stream (flushing what it holds)
    the other takes its partitions over from their committed offsets, and every event lands once."""
    settings = sink_settings(settings, str(tmp_path / "out"), sink_flush_rows=300, sink_flush_s=1.0)
    sinks = [Sink(settings), Sink(settings)]
    threads = [threading.Thread(target=s.run, daemon=True) for s in sinks]
    for thread in threads:
        thread.start()
    events = spread_events(4000, days=3)
    try:
        wait_for_members(settings, settings.sink_group, 2, timeout_s=60)
        produce(settings, events[:2000])
        deadline = time.monotonic() + 60
        while sum(s.stats.rows for s in sinks) < 1000:
            assert time.monotonic() < deadline, [s.stats for s in sinks]
            time.sleep(0.1)
        sinks[0].stop()
        threads[0].join(60)
        produce(settings, events[2000:])
        while committed(settings, settings.sink_group) < len(events):
            assert threads[1].is_alive()
            assert time.monotonic() < deadline + 60, sinks[1].stats
            time.sleep(0.2)
    finally:
        for sink in sinks:
            sink.stop()
        for thread in threads:
            thread.join(60)
    check_landed(rows(local_files(tmp_path / "out")), events)
    assert all(s.stats.rows > 0 for s in sinks), [s.stats for s in sinks]


def test_the_sinks_dead_letters_are_listed_and_replayed_by_notify_dlq(
    settings: Settings, tmp_path: Path
) -> None:
    """``notify dlq list events`` shows what the sink could not decode; ``replay events`` puts the very
    bytes back on the events topic, for a sink that knows their schema version to read again."""
    settings = sink_settings(settings, str(tmp_path / "out"))
    produce(settings, [], garbage=GARBAGE)
    assert Sink(settings).run(stop_when_idle=True, idle_s=1.0).dead_letters == 2
    env = {
        **os.environ,
        "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
    }
    listed = subprocess.run(
        [sys.executable, "-m", "notify_cli", "dlq", "list", "events"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    *lines, total = listed.stdout.splitlines()
    assert (len(lines), total) == (2, "2 dead letter(s)"), listed.stdout
    assert all(" sink " in line and " decode_error " in line for line in lines), lines
    replayed = subprocess.run(
        [sys.executable, "-m", "notify_cli", "dlq", "replay", "events"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert replayed.returncode == 0, replayed.stderr
    again = read_records(settings, topic_names(settings).events, max_records=10, timeout_s=30, idle_s=1.0)
    # The originals, then the replayed copies.
    assert sorted(r.value or b"" for r in again) == sorted(GARBAGE * 2)
    assert [h for r in again[2:] for h in r.headers or [] if h[0] == "replayed-from"]

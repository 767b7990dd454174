"""The bounded topic reader that the CLI, the demo and the tests rely on."""

from __future__ import annotations

import time

import pytest

from notify_core.kafka_clients import make_producer
from notify_core.records import FIRST_FETCH_GRACE_S, end_offsets, read_records
from notify_core.settings import Settings
from notify_core.topics import topic_names

pytestmark = pytest.mark.integration


def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(settings)
    for i, value in enumerate(values):
        producer.produce(topic, value=value, partition=i % settings.topic_partitions)
    assert producer.flush(10) == 0


def test_an_empty_topic_is_read_at_once(settings: Settings) -> None:
    started = time.monotonic()
    assert read_records(settings, topic_names(settings).events, max_records=10, timeout_s=30) == []
    # No partition has anything to fetch, so neither the idle stop nor its first-fetch grace applies.
    assert time.monotonic() - started < FIRST_FETCH_GRACE_S


def test_every_record_across_partitions_is_read(settings: Settings) -> None:
    topic = topic_names(settings).events
    values = [f"v{i}".encode() for i in range(30)]
    produce(settings, topic, values)
    records = read_records(settings, topic, max_records=100, timeout_s=30, idle_s=0.1)
    assert sorted(r.value or b"" for r in records) == sorted(values)
    assert {r.partition for r in records} == set(range(settings.topic_partitions))


def test_since_reads_only_what_came_after(settings: Settings) -> None:
    topic = topic_names(settings).events
    produce(settings, topic, [b"old"] * 6)
    since = end_offsets(settings, topic)
    assert read_records(settings, topic, max_records=100, timeout_s=30, since=since) == []
    produce(settings, topic, [b"new-1", b"new-2"])
    records = read_records(settings, topic, max_records=100, timeout_s=30, since=since)
    assert sorted(r.value or b"" for r in records) == [b"new-1", b"new-2"]


def test_max_records_bounds_the_read(settings: Settings) -> None:
    topic = topic_names(settings).events
    produce(settings, topic, [b"x"] * 20)
    assert len(read_records(settings, topic, max_records=5, timeout_s=30)) == 5

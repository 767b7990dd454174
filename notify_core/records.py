"""Our own view of a Kafka record: pure code never sees librdkafka's ``Message``.

``Record.from_message`` is the one adapter; ``read_records`` is a bounded read of a topic from the
beginning (for the CLI, the demo and tests), always with a fresh, throw-away consumer group.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import confluent_kafka

from notify_core.kafka_clients import make_consumer, translate
from notify_core.settings import Settings

FIRST_FETCH_GRACE_S = 5.0


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp_ms: int | None = None

    @classmethod
    def from_message(cls, msg: confluent_kafka.Message) -> Record:
        kind, stamp = msg.timestamp()
        raw = msg.headers() or []
        pairs = list(raw.items()) if isinstance(raw, dict) else raw
        headers = [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs]
        return cls(
            topic=msg.topic() or "",
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=msg.key(),
            value=msg.value(),
            headers=headers,
            timestamp_ms=stamp if kind != confluent_kafka.TIMESTAMP_NOT_AVAILABLE else None,
        )

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


def end_offsets(settings: Settings, topic: str, *, timeout_s: float = 10.0) -> dict[int, int]:
    """Each partition's high watermark now: pass it as ``since`` to read only what comes after."""
    consumer = make_consumer(settings, f"notify-reader-{uuid.uuid4()}")
    try:
        return {p: high for p, (_, high) in _partition_marks(consumer, topic, timeout_s).items()}
    finally:
        consumer.close()


def read_records(
    settings: Settings,
    topic: str,
    *,
    max_records: int,
    timeout_s: float,
    idle_s: float = 2.0,
    since: dict[int, int] | None = None,
) -> list[Record]:
    """Up to ``max_records`` committed records of ``topic``, from the start of every partition
    (or from the offsets in ``since``).

    Reads with explicit partition assignment (no group join, nothing committed), and stops once
    every partition is read up to the end it had when the read began, or after ``idle_s`` without
    records, or at ``timeout_s``.
    """
    consumer = make_consumer(settings, f"notify-reader-{uuid.uuid4()}")
    records: list[Record] = []
    try:
        marks = _partition_marks(consumer, topic, timeout_s)
        # A `since` offset already deleted by retention starts at the oldest record left.
        starts = {p: max((since or {}).get(p, low), low) for p, (low, _) in marks.items()}
        # Partitions already read to their end (empty, or `since` at the end) need no fetch at all.
        unread = {p: high for p, (_, high) in marks.items() if starts[p] < high}
        consumer.assign([confluent_kafka.TopicPartition(topic, p, starts[p]) for p in unread])
        deadline = time.monotonic() + timeout_s
        last_record = time.monotonic()
        while unread and len(records) < max_records and time.monotonic() < deadline:
            if all(_position(consumer, topic, p) >= end for p, end in unread.items()):
                break
            batch = consumer.consume(min(500, max_records - len(records)), timeout=0.2)
            if not batch:
                # The idle stop is for an end that never comes (a transaction left open); the first
                # fetch gets a longer grace, since a busy broker can take seconds to answer it.
                idle_limit = idle_s if records else max(idle_s, FIRST_FETCH_GRACE_S)
                if time.monotonic() - last_record > idle_limit:
                    break
                continue
            last_record = time.monotonic()
            for msg in batch:
                err = msg.error()
                if err is None:
                    records.append(Record.from_message(msg))
                elif err.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                    raise translate(err, f"reading {topic}")
    finally:
        consumer.close()
    return records[:max_records]


def read_positions(
    settings: Settings, topic: str, positions: list[tuple[int, int]], *, timeout_s: float
) -> list[Record]:
    """The committed records at exactly these (partition, offset) positions, in that order."""
    wanted = set(positions)
    found: dict[tuple[int, int], Record] = {}
    consumer = make_consumer(settings, f"notify-reader-{uuid.uuid4()}")
    try:
        starts: dict[int, int] = {}
        for partition, offset in wanted:
            starts[partition] = min(offset, starts.get(partition, offset))
        consumer.assign([confluent_kafka.TopicPartition(topic, p, o) for p, o in starts.items()])
        deadline = time.monotonic() + timeout_s
        while len(found) < len(wanted) and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error() is None and (msg.partition(), msg.offset()) in wanted:
                    record = Record.from_message(msg)
                    found[(record.partition, record.offset)] = record
    finally:
        consumer.close()
    return [found[p] for p in positions if p in found]


def _partition_marks(
    consumer: confluent_kafka.Consumer, topic: str, timeout_s: float
) -> dict[int, tuple[int, int]]:
    """Each partition's (start, end) now; no partitions for a topic that does not exist."""
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
    return {p: _watermarks(consumer, topic, p, timeout_s) for p in partitions}


def _watermarks(
    consumer: confluent_kafka.Consumer, topic: str, partition: int, timeout_s: float
) -> tuple[int, int]:
    """The partition's (start, end); retried while a just-created partition is still getting its leader."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, partition), timeout=5
            )
            return int(low), int(high)
        except confluent_kafka.KafkaException as exc:
            err = exc.args[0]
            if (not err.retriable() and err.code() not in _TRANSIENT) or time.monotonic() > deadline:
                raise translate(err, f"reading the end of {topic}[{partition}]") from exc
            time.sleep(0.1)


_TRANSIENT = (
    confluent_kafka.KafkaError.NOT_LEADER_FOR_PARTITION,
    confluent_kafka.KafkaError.LEADER_NOT_AVAILABLE,
    confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART,
)


def _position(consumer: confluent_kafka.Consumer, topic: str, partition: int) -> int:
    [tp] = consumer.position([confluent_kafka.TopicPartition(topic, partition)])
    return tp.offset if tp.offset is not None and tp.offset >= 0 else -1

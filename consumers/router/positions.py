"""Moving the router's consumer: back to re-read records, or past records already committed.

After an abort or while a failing batch is narrowed down, the consumer's position and what is
committed part ways; these put it where the next read must start. A partition revoked meanwhile
cannot be sought, and need not be: its new owner reads from the committed offset.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import confluent_kafka

from notify_core.records import Record


def rewind(consumer: confluent_kafka.Consumer, records: Sequence[Record]) -> None:
    """Read ``records`` again: each partition back to its first record here."""
    first: dict[tuple[str, int], int] = {}
    for r in records:
        first[(r.topic, r.partition)] = min(first.get((r.topic, r.partition), r.offset), r.offset)
    for (topic, partition), offset in first.items():
        seek(consumer, topic, partition, offset)


def seek_after(consumer: confluent_kafka.Consumer, records: Sequence[Record]) -> None:
    """Past ``records`` (committed by now): each partition to after its last record here."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[(r.topic, r.partition)] = max(last.get((r.topic, r.partition), r.offset), r.offset)
    for (topic, partition), offset in last.items():
        seek(consumer, topic, partition, offset + 1)


def seek(consumer: confluent_kafka.Consumer, topic: str, partition: int, offset: int) -> None:
    with contextlib.suppress(confluent_kafka.KafkaException):
        consumer.seek(confluent_kafka.TopicPartition(topic, partition, offset))

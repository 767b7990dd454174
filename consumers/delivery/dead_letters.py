"""Inspecting and replaying dead letters: which to pick (pure), and re-injecting them.

A channel dead letter is replayed onto the channel topic as a fresh delivery (attempt 0, no
not-before) after its delivery-log row is reopened with a new attempt budget; a delivery that was
sent in the meantime stays sent and the replayed copy is skipped. A request dead letter is replayed
onto the requests topic byte for byte, and the router judges it again.

Reading skips what is not a dead letter at all (a DLQ record that does not decode) and says so,
rather than stopping at it. Replaying refuses, letter by letter, what cannot be replayed: a letter
cut to fit the dead-letter size budget, or a channel letter whose payload is not a channel message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from consumers.delivery.delivery_log import DeliveryLog
from notify_core.codec import CHANNEL_MESSAGE, DEAD_LETTER, default_codec
from notify_core.exceptions import DecodeError
from notify_core.kafka_async import AsyncProducer
from notify_core.records import Record, read_records
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from notify_core.tracing import only_trace_headers

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Letter:
    record: Record  # where the dead letter itself sits
    letter: dict[str, Any]


@dataclass(frozen=True)
class Selection:
    reason: str | None = None  # error_type, exact
    since: datetime | None = None  # failed_at >= since
    until: datetime | None = None  # failed_at < until

    def matches(self, letter: dict[str, Any]) -> bool:
        failed_at: datetime = letter["failed_at"]
        if self.reason is not None and letter["error_type"] != self.reason:
            return False
        if self.since is not None and failed_at < self.since:
            return False
        return self.until is None or failed_at < self.until


def dlq_topic(settings: Settings, source: str) -> str:
    """``source``: a channel name (ios, android, sms, email), ``requests`` or ``events`` (the sink's)."""
    names = topic_names(settings)
    if source == "requests":
        return names.requests_dlq
    if source == "events":
        return names.events_dlq
    try:
        return names.dlq(Channel(source))
    except ValueError:
        raise ValueError(
            f"unknown dead-letter source {source!r}: use requests, ios, android, sms, email or events"
        ) from None


@dataclass(frozen=True)
class Skipped:
    """A record on a dead-letter topic that is not a dead letter (it does not decode as one)."""

    record: Record
    reason: str


@dataclass(frozen=True)
class Scan:
    letters: list[Letter]  # decoded and selected
    skipped: list[Skipped]  # undecodable, whatever the selection


@dataclass(frozen=True)
class Refusal:
    """A selected letter that replay leaves where it is, and why."""

    item: Letter
    reason: str


def decode_letters(records: Iterable[Record], selection: Selection) -> Scan:
    """Each record decoded as a dead letter and matched; one that does not decode is skipped, not fatal."""
    codec = default_codec()
    letters, skipped = [], []
    for record in records:
        try:
            letter = codec.decode(record.value or b"", DEAD_LETTER)
        except DecodeError as exc:
            skipped.append(Skipped(record, str(exc)))
            continue
        if selection.matches(letter):
            letters.append(Letter(record, letter))
    return Scan(letters, skipped)


def scan_letters(
    settings: Settings, source: str, selection: Selection, *, max_records: int = 100_000
) -> Scan:
    """The selected dead letters of ``source``, and the records skipped as undecodable."""
    records = read_records(
        settings, dlq_topic(settings, source), max_records=max_records, timeout_s=60, idle_s=1.0
    )
    return decode_letters(records, selection)


def read_letters(
    settings: Settings, source: str, selection: Selection, *, max_records: int = 100_000
) -> list[Letter]:
    """The selected dead letters of ``source`` (undecodable records skipped: see ``scan_letters``)."""
    return scan_letters(settings, source, selection, max_records=max_records).letters


def refusal(letter: dict[str, Any], source: str) -> str | None:
    """Why ``letter`` cannot be replayed onto ``source``'s topic, or None when it can."""
    if letter.get("payload_truncated"):
        return (
            f"cut to fit the dead-letter size budget (original {letter.get('payload_size')} bytes,"
            f" sha256 {letter.get('payload_sha256')}): it cannot be replayed byte for byte"
        )
    if source not in ("requests", "events"):
        try:
            default_codec().decode(letter["payload"], CHANNEL_MESSAGE)
        except DecodeError as exc:
            return f"its payload is not a channel message ({exc})"
    return None


def split_replayable(letters: Iterable[Letter], source: str) -> tuple[list[Letter], list[Refusal]]:
    """(letters that can be replayed, refusals for the rest), each in the given order."""
    replayable, refused = [], []
    for item in letters:
        reason = refusal(item.letter, source)
        if reason is None:
            replayable.append(item)
        else:
            refused.append(Refusal(item, reason))
    return replayable, refused


def replay_message(letter: dict[str, Any]) -> dict[str, Any]:
    """The channel message to deliver again: the original, with a fresh attempt budget."""
    message = default_codec().decode(letter["payload"], CHANNEL_MESSAGE)
    return {**message, "attempt": 0, "not_before": None}


async def replay(
    settings: Settings, source: str, letters: Iterable[Letter], delivery_log: DeliveryLog | None
) -> int:
    """Re-inject ``letters``; returns how many were produced (each acknowledged by the broker).

    Letters that cannot be replayed (``refusal``) are left out and logged; ``split_replayable``
    first tells a caller which those are.
    """
    codec = default_codec()
    names = topic_names(settings)
    items, refused = split_replayable(letters, source)
    for refused_one in refused:
        letter_id = refused_one.item.letter["dead_letter_id"]
        log.warning("replay_refused", dead_letter_id=letter_id, reason=refused_one.reason)
    outputs: list[tuple[str, bytes, bytes | None, list[tuple[str, str | bytes | None]]]] = []
    if source in ("requests", "events"):
        # Byte for byte: a request the router refused, or an event the sink could not decode (a
        # schema version it did not know yet), goes back for a fixed router or sink to read again.
        topic = names.requests if source == "requests" else names.events
        for item in items:
            headers: list[tuple[str, str | bytes | None]] = [("replayed-from", item.record.topic.encode())]
            headers += only_trace_headers(item.record.headers)  # the replay goes on in the same trace
            outputs.append((topic, item.letter["payload"], item.letter["key"], headers))
    else:
        messages = [replay_message(item.letter) for item in items]
        if delivery_log is not None and messages:
            # Reopened before they are produced, so the worker never meets a replayed copy still closed.
            await delivery_log.reopen([m["delivery_id"] for m in messages], datetime.now(UTC))
        topic = names.channel(Channel(source))
        for item, message in zip(items, messages, strict=True):
            headers = [("replayed-from", item.record.topic.encode())]
            headers += only_trace_headers(item.record.headers)
            outputs.append((topic, codec.encode(CHANNEL_MESSAGE, message), item.letter["key"], headers))
    producer = AsyncProducer(settings)
    try:
        # Produced in order (librdkafka keeps per-partition order), acknowledged together.
        await asyncio.gather(*(producer.produce(t, v, k, h) for t, v, k, h in outputs))
    finally:
        producer.close()
    return len(outputs)

"""Builders for the records every step writes: analytics events and dead letters (pure).

One place that knows the field layout of ``notification_event`` and ``dead_letter`` so the router,
the workers and the HTTP API emit identical shapes.

A dead letter wraps the original record, so a record near the broker's size limit made a letter over
it: the produce failed with ``MSG_SIZE_TOO_LARGE`` and the consumer replayed its batch forever. So a
letter is measured with the codec that writes it and never exceeds ``max_bytes``: what does not fit is
cut (a bounded prefix of the value, trimmed key and headers) and the letter says so
(``payload_truncated``, a note in ``error_message``); ``payload_size`` and ``payload_sha256`` always
describe the whole original value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notify_core.codec import DEAD_LETTER, default_codec
from notify_core.ids import random_uuid
from notify_core.records import Record
from notify_core.topics import Channel

# The budget for one encoded dead letter. Well below the broker's default 1 MB max.message.bytes
# (1048588) and the producer's 1 MB message.max.bytes: the Kafka key, headers and batch framing of
# the dead-letter record come on top, and nothing else in a DLQ needs the room.
DEAD_LETTER_MAX_BYTES = 256 * 1024
# The bounded fields below take up to ~14.5 KiB together; a smaller budget could not be kept.
DEAD_LETTER_MIN_BYTES = 16 * 1024
ERROR_MESSAGE_MAX_BYTES = 4096  # exception text can be huge (a whole response body, a repr)
ERROR_TYPE_MAX_BYTES = 128  # machine codes are short; anything longer is a bug, kept readable
NAME_MAX_BYTES = 255  # stage and source_topic (Kafka topic names are at most 249 characters)
# Only when a letter does not fit: the key's prefix kept, each header value's, all headers together.
KEY_MAX_BYTES = 1024
HEADER_VALUE_MAX_BYTES = 1024
HEADERS_MAX_BYTES = 8192


def event(
    event_type: str,
    *,
    occurred_at: datetime,
    notification_id: str,
    user_id: str,
    service: str | None = None,
    delivery_id: str | None = None,
    channel: Channel | None = None,
    category: str | None = None,
    reason: str | None = None,
    provider: str | None = None,
    provider_message_id: str | None = None,
    attempt: int | None = None,
    latency_ms: float | None = None,
    attributes: dict[str, str] | None = None,
    template_id: str | None = None,
    locale: str | None = None,
    requested_at: datetime | None = None,
) -> dict[str, Any]:
    """A ``notification_event`` record (v2). ``event_type`` is the Avro symbol (ROUTED, SENT, ...).

    ``template_id``, ``locale`` and ``requested_at`` (the request's ``created_at``) are filled by
    the writers that know them; the README's "The analytics events" says which.
    """
    return {
        "event_id": str(random_uuid()),
        "event_type": event_type,
        "occurred_at": occurred_at,
        "notification_id": notification_id,
        "delivery_id": delivery_id,
        "user_id": user_id,
        "service": service,
        "channel": channel.value.upper() if channel is not None else None,
        "category": category,
        "reason": reason,
        "provider": provider,
        "provider_message_id": provider_message_id,
        "attempt": attempt,
        "latency_ms": latency_ms,
        "attributes": attributes or {},
        "template_id": template_id,
        "locale": locale,
        "requested_at": requested_at,
    }


@dataclass(frozen=True)
class Failure:
    error_type: str  # machine-readable: decode_error, invalid_request, BadDeviceToken, ...
    message: str


def dead_letter(
    record: Record,
    failure: Failure,
    *,
    stage: str,
    failed_at: datetime,
    attempts: int = 0,
    first_failed_at: datetime | None = None,
    max_bytes: int = DEAD_LETTER_MAX_BYTES,
) -> dict[str, Any]:
    """A ``dead_letter`` record wrapping the original bytes, encoded in at most ``max_bytes``.

    The original key, value and headers are kept untouched when they fit. When they do not, the
    value keeps its first bytes, the key its first ``KEY_MAX_BYTES``, headers are trimmed or dropped,
    ``payload_truncated`` is set when the value or the key was cut (the letter cannot be replayed byte
    for byte) and ``error_message`` ends with a note saying what was cut. ``error_message`` is always
    bounded to ``ERROR_MESSAGE_MAX_BYTES`` before that note.
    """
    if max_bytes < DEAD_LETTER_MIN_BYTES:
        raise ValueError(f"a dead-letter budget under {DEAD_LETTER_MIN_BYTES} bytes cannot be kept")
    payload = record.value or b""
    letter: dict[str, Any] = {
        "dead_letter_id": str(random_uuid()),
        "failed_at": failed_at,
        "stage": _cut_text(stage, NAME_MAX_BYTES),
        "source_topic": _cut_text(record.topic, NAME_MAX_BYTES),
        "source_partition": record.partition,
        "source_offset": record.offset,
        "key": record.key,
        "payload": payload,
        "headers": {_clean(k): v for k, v in record.headers},
        "error_type": _cut_text(failure.error_type, ERROR_TYPE_MAX_BYTES),
        "error_message": _bounded_message(failure.message),
        "attempts": attempts,
        "first_failed_at": first_failed_at,
        "payload_size": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_truncated": False,
    }
    if _overhead(letter) + _bytes_cost(len(payload)) <= max_bytes:
        return letter
    return _fit(letter, max_bytes)


def _fit(letter: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """``letter`` cut to ``max_bytes``: key and headers bounded first, the value gets the rest."""
    payload: bytes = letter["payload"]
    key: bytes | None = letter["key"]
    key_cut = key is not None and len(key) > KEY_MAX_BYTES
    headers, dropped, trimmed = _bounded_headers(letter["headers"])
    bounded = {**letter, "key": key[:KEY_MAX_BYTES] if key is not None else None, "headers": headers}

    def noted(kept: int) -> dict[str, Any]:
        cuts = []
        if kept < len(payload):
            cuts.append(
                f"original record {len(payload)} bytes (sha256 {letter['payload_sha256']})"
                f" truncated to the first {kept}"
            )
        if key_cut and key is not None:
            cuts.append(f"key {len(key)} bytes cut to the first {KEY_MAX_BYTES}")
        if dropped or trimmed:
            cuts.append(f"{dropped} header(s) dropped, {trimmed} trimmed to {HEADER_VALUE_MAX_BYTES} bytes")
        note = f" [dead letter cut to fit {max_bytes} bytes: {'; '.join(cuts)}]" if cuts else ""
        return {**bounded, "error_message": letter["error_message"] + note}

    # Measured with the longest note this letter can get: the real one (fewer digits, or no payload
    # part at all) is never longer, so the value's share only errs on the small side.
    room = max_bytes - _overhead(noted(len(payload) - 1 if payload else 0))
    kept = min(len(payload), _fitting(room))
    cut = noted(kept)
    cut["payload"] = payload[:kept]
    cut["payload_truncated"] = kept < len(payload) or key_cut
    return cut


def _overhead(letter: Mapping[str, Any]) -> int:
    """Encoded size of ``letter`` without its payload bytes (exact: the codec that writes it)."""
    return len(default_codec().encode(DEAD_LETTER, {**letter, "payload": b""})) - _bytes_cost(0)


def _bytes_cost(length: int) -> int:
    """Avro ``bytes`` of ``length``: a zig-zag varint length, then the bytes."""
    zigzag = length << 1
    return max(1, (zigzag.bit_length() + 6) // 7) + length


def _fitting(room: int) -> int:
    """The longest ``bytes`` value whose encoding takes at most ``room`` bytes."""
    if room < 1:
        return 0
    kept = room - (_bytes_cost(room) - room)  # its length varint is never longer than room's
    return max(0, kept)


def _bounded_headers(headers: Mapping[str, bytes]) -> tuple[dict[str, bytes], int, int]:
    """(headers kept, how many dropped, how many trimmed): values cut, all together bounded."""
    kept: dict[str, bytes] = {}
    used = dropped = trimmed = 0
    for name, value in headers.items():
        size = len(name.encode())
        short = value[:HEADER_VALUE_MAX_BYTES]
        cost = size + len(short) + 4  # + the two length varints (each at most 2 bytes here)
        if size > NAME_MAX_BYTES or used + cost > HEADERS_MAX_BYTES:
            dropped += 1
            continue
        trimmed += len(short) < len(value)
        kept[name], used = short, used + cost
    return kept, dropped, trimmed


def _clean(text: str) -> str:
    """``text`` as valid UTF-8 (a lone surrogate in exception text would make the letter unencodable)."""
    return text.encode("utf-8", "replace").decode()


def _cut_text(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, cut at a character boundary."""
    raw = text.encode("utf-8", "replace")
    return raw[:limit].decode("utf-8", "ignore") if len(raw) > limit else raw.decode()


def _bounded_message(text: str) -> str:
    """``text`` in at most ``ERROR_MESSAGE_MAX_BYTES``, saying how long it was when cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= ERROR_MESSAGE_MAX_BYTES:
        return raw.decode()
    marker = f" [... error message of {len(raw)} bytes cut]"
    return _cut_text(raw.decode(), ERROR_MESSAGE_MAX_BYTES - len(marker)) + marker

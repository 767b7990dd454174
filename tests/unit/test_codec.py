"""The Avro codec: exact wire bytes, clear errors for anything that is not our record."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from notify_core.codec import (
    CHANNEL_MESSAGE,
    DEAD_LETTER,
    EVENT,
    REQUEST,
    USER_CHANGE,
    EncodeError,
    crc64_avro,
    default_codec,
)
from notify_core.exceptions import DecodeError

CODEC = default_codec()
EVENT_RECORD: dict[str, Any] = {
    "event_id": "e",
    "event_type": "SENT",
    "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
    "notification_id": "n",
    "user_id": "u",
}
# Pinned: changing notification_event.v1.avsc or the encoding breaks every reader in the field.
EVENT_BYTES = bytes.fromhex("c3017c70e2fee8f4413302650680a0d5edee66026e000275000000000000000000")
# The same event as v2 writes it (what every writer produces now): v2's fingerprint, three nulls more.
EVENT_V2_BYTES = bytes.fromhex("c30150c9760f96f6616a02650680a0d5edee66026e000275000000000000000000000000")


def test_crc64_avro_matches_the_specification_vector() -> None:
    # The Avro specification's test data: fingerprint of the schema "null".
    assert crc64_avro(b'"null"') == 7195948357588979594


def test_exact_bytes_for_a_known_event() -> None:
    """v1 bytes stay what they were; the default (newest, v2) adds only the three null unions."""
    encoded = CODEC.encode(EVENT, EVENT_RECORD, version=1)
    assert encoded == EVENT_BYTES
    assert encoded[:2] == b"\xc3\x01"
    assert encoded[2:10] == CODEC.fingerprint(EVENT, 1)
    newest = CODEC.encode(EVENT, EVENT_RECORD)
    assert newest == EVENT_V2_BYTES
    assert newest[2:10] == CODEC.fingerprint(EVENT) == CODEC.fingerprint(EVENT, 2)


def test_fingerprint_is_crc64_of_the_canonical_form() -> None:
    from fastavro.schema import to_parsing_canonical_form

    canonical = to_parsing_canonical_form(CODEC.schema(EVENT))
    assert CODEC.fingerprint(EVENT) == struct.pack("<Q", crc64_avro(canonical.encode()))


def test_decode_fills_defaults_and_keeps_utc() -> None:
    decoded = CODEC.decode(EVENT_BYTES, EVENT)
    assert decoded["occurred_at"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert decoded["occurred_at"].tzinfo is not None
    assert decoded["attributes"] == {}
    assert decoded["channel"] is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\xc3\x01\x00", "too short"),
        (b'{"json": "not avro"}', "not an Avro single-object"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown writer schema fingerprint"),
        (EVENT_BYTES + b"\x00", "unexpected bytes"),
    ],
)
def test_garbage_raises_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        CODEC.decode(data, EVENT)


@pytest.mark.parametrize("cut", [11, 12, 20, len(EVENT_BYTES) - 1])
def test_truncated_records_raise_decode_error(cut: int) -> None:
    with pytest.raises(DecodeError, match="corrupt"):
        CODEC.decode(EVENT_BYTES[:cut], EVENT)


def test_a_record_of_another_schema_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"expected io\.notify\.NotificationRequest"):
        CODEC.decode(EVENT_BYTES, REQUEST)


def test_encode_error_names_the_problem() -> None:
    with pytest.raises(EncodeError, match="notification_event"):
        CODEC.encode(EVENT, {**EVENT_RECORD, "event_type": "EXPLODED"})
    with pytest.raises(EncodeError):
        CODEC.encode(EVENT, {k: v for k, v in EVENT_RECORD.items() if k != "user_id"})


def test_every_contract_schema_is_loaded() -> None:
    assert set(CODEC.names()) == {REQUEST, CHANNEL_MESSAGE, EVENT, DEAD_LETTER, USER_CHANGE}
    assert all(CODEC.versions(name) for name in CODEC.names())

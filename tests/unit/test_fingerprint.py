"""fastavro's CRC-64-AVRO gives every schema file the same 8 wire bytes our own implementation gave.

The codec used to compute the fingerprint by hand; it now asks fastavro. The bytes are the writer's
identity in every record already on a topic, so they must not move: checked against the Avro
specification's algorithm (kept here as the reference) for every schema file, and pinned for the
versions released so far.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from notify_core.codec import SCHEMA_DIR, default_codec, fingerprint_of

# The fingerprints of the released versions, as the hand-written CRC-64-AVRO computed them.
RELEASED = {
    "channel_message.v1.avsc": "a93482fa0a8d9247",
    "channel_message.v2.avsc": "b7c491716bd1ce3f",
    "dead_letter.v1.avsc": "324cbb8e89ef7cb6",
    "dead_letter.v2.avsc": "34a2d84423531944",
    "notification_event.v1.avsc": "7c70e2fee8f44133",
    "notification_event.v2.avsc": "50c9760f96f6616a",
    "notification_request.v1.avsc": "2c3982664ab16c76",
    "user_change.v1.avsc": "771c4c4e4bb220ae",
}
_EMPTY = 0xC15D213AA4D7A795  # the specification's EMPTY, the fingerprint of nothing


def _reference_table() -> list[int]:
    table = []
    for byte in range(256):
        fp = byte
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _reference_table()


def reference_crc64_avro(data: bytes) -> int:
    """The specification's Rabin fingerprint, exactly as the codec computed it before fastavro did."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def parsed(path: Path) -> dict[str, object]:
    schema = fastavro.parse_schema(json.loads(path.read_text()))
    assert isinstance(schema, dict)
    return schema


SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))


def test_the_reference_gives_the_specification_vector() -> None:
    """The reference itself is right: the specification's fingerprint of the schema "null"."""
    assert reference_crc64_avro(b'"null"') == 7195948357588979594


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_fastavro_fingerprint_is_the_old_bytes(path: Path) -> None:
    """For every schema file, fastavro's CRC-64-AVRO of the canonical form is the old 8 LE bytes."""
    canonical = to_parsing_canonical_form(parsed(path))
    old = struct.pack("<Q", reference_crc64_avro(canonical.encode()))
    assert bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")) == old
    assert fingerprint_of(parsed(path)) == old


@pytest.mark.parametrize(("file_name", "expected"), sorted(RELEASED.items()))
def test_released_versions_keep_their_fingerprint(file_name: str, expected: str) -> None:
    """What the codec writes for each released version is the fingerprint it always wrote."""
    name, _, version = file_name.removesuffix(".avsc").partition(".v")
    assert default_codec().fingerprint(name, int(version)).hex() == expected

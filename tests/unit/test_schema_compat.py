"""The contract: every schema version reads data written by every other version of the same record.

Generic over ``schemas/``: with one version per record today, it checks each against itself; a new
``.v2.avsc`` is checked both ways (backward and forward) against every older one automatically.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from itertools import product
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from notify_core.codec import CHANNEL_MESSAGE, DEAD_LETTER, EVENT, SCHEMA_DIR, default_codec
from notify_core.topics import Channel
from sandboxes.messages import channel_message
from tests.avro_strategies import records

CODEC = default_codec()
PAIRS = [
    (name, writer, reader)
    for name in CODEC.names()
    for writer, reader in product(CODEC.versions(name), repeat=2)
]


@pytest.mark.parametrize(("name", "writer", "reader"), PAIRS)
def test_reader_version_reads_writer_version(name: str, writer: int, reader: int) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records(CODEC.schema(name, writer)))
    def check(record: dict[str, Any]) -> None:
        decoded = CODEC.decode(CODEC.encode(name, record, version=writer), name, version=reader)
        reader_fields = {f["name"] for f in CODEC.schema(name, reader)["fields"]}
        assert set(decoded) == reader_fields

    check()


@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.avsc")), ids=lambda p: p.name)
def test_schema_files_are_documented_and_named_by_version(path: Any) -> None:
    assert re.fullmatch(r"[a-z_]+\.v[1-9][0-9]*\.avsc", path.name)
    schema = json.loads(path.read_text())
    assert schema.get("doc"), "the record needs a doc"
    assert [f["name"] for f in schema["fields"] if not f.get("doc")] == []


@pytest.mark.parametrize("name", CODEC.names())
def test_record_name_is_stable_across_versions(name: str) -> None:
    assert len({CODEC.schema(name, v)["name"] for v in CODEC.versions(name)}) == 1


# --- dead_letter v1 <-> v2: the size fields --------------------------------------------------------
DEAD_LETTER_V1: dict[str, Any] = {
    "dead_letter_id": "d",
    "failed_at": datetime(2026, 1, 1, tzinfo=UTC),
    "stage": "worker.ios",
    "source_topic": "t",
    "source_partition": 1,
    "source_offset": 2,
    "key": b"k",
    "payload": b"p",
    "headers": {"h": b"v"},
    "error_type": "e",
    "error_message": "m",
    "attempts": 3,
    "first_failed_at": None,
}
DEAD_LETTER_V2 = DEAD_LETTER_V1 | {"payload_size": 1, "payload_sha256": "ab", "payload_truncated": True}
# Pinned: letters already on the dead-letter topics, and the shape every new one is written in.
DEAD_LETTER_V1_BYTES = bytes.fromhex(
    "c301324cbb8e89ef7cb6026480a0d5edee6614776f726b65722e696f730274020402026b02700202680276000265026d0600"
)
DEAD_LETTER_V2_BYTES = bytes.fromhex(
    "c30134a2d84423531944026480a0d5edee6614776f726b65722e696f730274020402026b027002026802760002"
    "65026d0600020204616201"
)


def test_dead_letters_are_written_as_v2() -> None:
    """The codec writes the newest version; the v1 and v2 wire bytes stay what they were."""
    assert CODEC.versions(DEAD_LETTER) == [1, 2]
    assert CODEC.encode(DEAD_LETTER, DEAD_LETTER_V2) == DEAD_LETTER_V2_BYTES
    assert DEAD_LETTER_V2_BYTES[2:10] == CODEC.fingerprint(DEAD_LETTER, 2)
    assert CODEC.encode(DEAD_LETTER, DEAD_LETTER_V1, version=1) == DEAD_LETTER_V1_BYTES


def test_a_v1_letter_reads_as_v2_with_the_size_unknown() -> None:
    """Letters written before v2 are whole by construction; their size and digest were not recorded."""
    decoded = CODEC.decode(DEAD_LETTER_V1_BYTES, DEAD_LETTER)
    assert decoded == DEAD_LETTER_V1 | {
        "payload_size": -1,
        "payload_sha256": None,
        "payload_truncated": False,
    }


def test_a_v2_letter_reads_as_v1_without_the_size_fields() -> None:
    """A v1 reader (an older CLI) still reads new letters; it just does not see the new fields."""
    assert CODEC.decode(DEAD_LETTER_V2_BYTES, DEAD_LETTER, version=1) == DEAD_LETTER_V1


def test_the_v2_size_fields_have_defaults_both_ways() -> None:
    """Every field v2 adds has a default, so v1 data resolves to v2 (and v2 to v1 drops them)."""
    v1_fields = {f["name"] for f in CODEC.schema(DEAD_LETTER, 1)["fields"]}
    added = [f for f in CODEC.schema(DEAD_LETTER, 2)["fields"] if f["name"] not in v1_fields]
    assert [f["name"] for f in added] == ["payload_size", "payload_sha256", "payload_truncated"]
    assert all("default" in f for f in added)


# --- notification_event v1 <-> v2: template, locale and the request's time -----------------------------
EVENT_V1: dict[str, Any] = {
    "event_id": "e",
    "event_type": "ROUTED",
    "occurred_at": datetime(2026, 1, 1, 12, tzinfo=UTC),
    "notification_id": "n",
    "delivery_id": "d",
    "user_id": "u",
    "service": "shop",
    "channel": "EMAIL",
    "category": "account",
    "reason": None,
    "provider": None,
    "provider_message_id": None,
    "attempt": None,
    "latency_ms": None,
    "attributes": {"deliver_at": "2026-01-01T13:00:00+00:00"},
}
EVENT_V2 = EVENT_V1 | {
    "template_id": "welcome",
    "locale": "pt-BR",
    "requested_at": datetime(2026, 1, 1, 11, 59, 59, 250000, tzinfo=UTC),
}


def test_events_are_written_as_v2() -> None:
    """The codec writes the newest notification_event by default, and that is v2."""
    assert CODEC.versions(EVENT) == [1, 2]
    encoded = CODEC.encode(EVENT, EVENT_V2)
    assert encoded[2:10] == CODEC.fingerprint(EVENT, 2)
    assert CODEC.decode(encoded, EVENT) == EVENT_V2


def test_a_v1_event_reads_as_v2_with_the_new_fields_null() -> None:
    """Events already on the topic (v1) read with the v2 reader: template, locale and time are null."""
    v1_bytes = CODEC.encode(EVENT, EVENT_V1, version=1)
    assert v1_bytes[2:10] == CODEC.fingerprint(EVENT, 1)
    assert CODEC.decode(v1_bytes, EVENT) == EVENT_V1 | {
        "template_id": None,
        "locale": None,
        "requested_at": None,
    }


def test_a_v2_event_reads_with_the_v1_reader() -> None:
    """Forward compatibility: a reader that only knows v1 (an older sink or CLI, a data team's job)
    reads v2 events whole, without the three new fields."""
    assert CODEC.decode(CODEC.encode(EVENT, EVENT_V2), EVENT, version=1) == EVENT_V1


def test_v2_adds_only_optional_documented_fields_and_keeps_v1s() -> None:
    """v2 is v1 (same fields, types and enums, in the same order) plus three unions with null first,
    default null and a doc: so each version resolves to the other."""
    v1 = json.loads((SCHEMA_DIR / "notification_event.v1.avsc").read_text())
    v2 = json.loads((SCHEMA_DIR / "notification_event.v2.avsc").read_text())
    kept = v2["fields"][: len(v1["fields"])]
    assert [(f["name"], f["type"]) for f in kept] == [(f["name"], f["type"]) for f in v1["fields"]]
    added = v2["fields"][len(v1["fields"]) :]
    assert [f["name"] for f in added] == ["template_id", "locale", "requested_at"]
    assert all(f["type"][0] == "null" and f["default"] is None and f["doc"] for f in added)
    assert [f["type"][1] for f in added] == [
        "string",
        "string",
        {"type": "long", "logicalType": "timestamp-millis"},
    ]


# --- channel_message v1 <-> v2: the request's time -------------------------------------------------
def _channel_message_v1() -> dict[str, Any]:
    message = channel_message(Channel.IOS, "a" * 64)
    del message["requested_at"]
    return message


def test_channel_messages_are_written_as_v2_and_read_v1_with_no_request_time() -> None:
    """Messages already on the channel topics (v1) read as v2 with ``requested_at`` null; a v2
    message read as v1 (a worker not yet upgraded) drops it."""
    v1 = _channel_message_v1()
    assert CODEC.versions(CHANNEL_MESSAGE) == [1, 2]
    v1_bytes = CODEC.encode(CHANNEL_MESSAGE, v1, version=1)
    decoded = CODEC.decode(v1_bytes, CHANNEL_MESSAGE)
    assert decoded["requested_at"] is None
    assert {k: v for k, v in decoded.items() if k != "requested_at"} == CODEC.decode(
        v1_bytes, CHANNEL_MESSAGE, version=1
    )
    requested = datetime(2026, 1, 1, 12, tzinfo=UTC)
    encoded = CODEC.encode(CHANNEL_MESSAGE, v1 | {"requested_at": requested})
    assert encoded[2:10] == CODEC.fingerprint(CHANNEL_MESSAGE, 2)
    assert CODEC.decode(encoded, CHANNEL_MESSAGE)["requested_at"] == requested
    assert "requested_at" not in CODEC.decode(encoded, CHANNEL_MESSAGE, version=1)


def test_channel_message_v2_adds_only_an_optional_request_time() -> None:
    """v2 is v1 (same fields and types, same order) plus one null-first union with default null."""
    v1 = json.loads((SCHEMA_DIR / "channel_message.v1.avsc").read_text())
    v2 = json.loads((SCHEMA_DIR / "channel_message.v2.avsc").read_text())
    assert v2["fields"][: len(v1["fields"])] == v1["fields"]
    added = v2["fields"][len(v1["fields"]) :]
    assert [f["name"] for f in added] == ["requested_at"]
    assert added[0]["type"] == ["null", {"type": "long", "logicalType": "timestamp-millis"}]
    assert added[0]["default"] is None
    assert added[0]["doc"]

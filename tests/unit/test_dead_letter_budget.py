"""dead_letter never encodes over its budget: whole when it fits, cut (and saying so) when not."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notify_core.codec import DEAD_LETTER, default_codec
from notify_core.events import (
    DEAD_LETTER_MAX_BYTES,
    DEAD_LETTER_MIN_BYTES,
    ERROR_MESSAGE_MAX_BYTES,
    HEADER_VALUE_MAX_BYTES,
    KEY_MAX_BYTES,
    Failure,
    dead_letter,
)
from notify_core.records import Record

CODEC = default_codec()
AT = datetime(2026, 5, 1, 12, tzinfo=UTC)
MB = 1024 * 1024


def record(
    value: bytes = b"v", key: bytes | None = b"user-1", headers: list[tuple[str, bytes]] | None = None
) -> Record:
    return Record("notifications.ios", 3, 1234, key, value, headers or [("traceparent", b"00-abc-01")])


def letter_of(rec: Record, message: str = "boom", **kwargs: Any) -> dict[str, Any]:
    return dead_letter(rec, Failure("BadDeviceToken", message), stage="worker.ios", failed_at=AT, **kwargs)


def encoded_size(letter: dict[str, Any]) -> int:
    return len(CODEC.encode(DEAD_LETTER, letter))


def test_the_budget_is_well_below_the_brokers_default() -> None:
    """256 KiB leaves the Kafka key, headers and batch framing room under the 1 MB default."""
    assert DEAD_LETTER_MAX_BYTES == 256 * 1024
    assert DEAD_LETTER_MAX_BYTES <= 1_048_588 // 4


def test_a_small_record_is_kept_whole() -> None:
    """Under the budget nothing changes; size and digest are filled all the same."""
    rec = record(b"payload", headers=[("traceparent", b"t"), ("x", b"y")])
    letter = letter_of(rec)
    assert (letter["payload"], letter["key"], letter["headers"]) == (
        b"payload",
        b"user-1",
        {"traceparent": b"t", "x": b"y"},
    )
    assert letter["error_message"] == "boom"
    assert letter["payload_size"] == 7
    assert letter["payload_sha256"] == hashlib.sha256(b"payload").hexdigest()
    assert letter["payload_truncated"] is False
    decoded = CODEC.decode(CODEC.encode(DEAD_LETTER, letter), DEAD_LETTER)
    assert decoded["payload_truncated"] is False


def test_a_one_megabyte_record_keeps_a_prefix_and_says_so() -> None:
    """The reported case: a ~1 MB value made a letter over the broker's limit; now it is cut to fit."""
    value = bytes(range(256)) * (4 * 1024)  # 1 MiB
    letter = letter_of(record(value))
    size = encoded_size(letter)
    assert DEAD_LETTER_MAX_BYTES - 32 <= size <= DEAD_LETTER_MAX_BYTES  # the value got nearly all the room
    kept = len(letter["payload"])
    assert value.startswith(letter["payload"])
    assert (letter["payload_size"], letter["payload_truncated"]) == (MB, True)
    digest = hashlib.sha256(value).hexdigest()
    assert letter["payload_sha256"] == digest
    assert letter["error_message"] == (
        f"boom [dead letter cut to fit {DEAD_LETTER_MAX_BYTES} bytes: original record {MB} bytes"
        f" (sha256 {digest}) truncated to the first {kept}]"
    )
    assert letter["key"] == b"user-1"  # small parts are not cut because the value was


def test_a_huge_key_is_cut_and_marks_the_letter_not_replayable() -> None:
    """A key cut to its prefix would replay onto another partition: the letter is marked truncated."""
    letter = letter_of(record(b"small", key=b"k" * MB))
    assert encoded_size(letter) <= DEAD_LETTER_MAX_BYTES
    assert letter["key"] == b"k" * KEY_MAX_BYTES
    assert letter["payload"] == b"small"
    assert letter["payload_truncated"] is True
    assert letter["error_message"].endswith(f"key {MB} bytes cut to the first {KEY_MAX_BYTES}]")


def test_huge_headers_are_trimmed_or_dropped_but_the_record_stays_replayable() -> None:
    """Headers are not replayed, so bounding them keeps the value and key whole."""
    headers = [("big", b"h" * MB)] + [(f"h{i}", b"x" * 900) for i in range(400)]
    letter = letter_of(record(b"small", headers=headers))
    assert encoded_size(letter) <= DEAD_LETTER_MAX_BYTES
    assert letter["headers"]["big"] == b"h" * HEADER_VALUE_MAX_BYTES
    assert 0 < len(letter["headers"]) < 401
    assert (letter["payload"], letter["key"], letter["payload_truncated"]) == (b"small", b"user-1", False)
    assert f"header(s) dropped, 1 trimmed to {HEADER_VALUE_MAX_BYTES} bytes]" in letter["error_message"]


def test_the_error_message_is_always_bounded() -> None:
    """Exception text can be megabytes (a response body); it is cut even when the letter would fit."""
    letter = letter_of(record(), message="é" * 100_000)
    message = letter["error_message"]
    assert len(message.encode()) <= ERROR_MESSAGE_MAX_BYTES
    assert message.endswith(" [... error message of 200000 bytes cut]")
    assert message.startswith("é" * 100)
    assert letter["payload_truncated"] is False


def test_a_lone_surrogate_in_the_error_text_still_encodes() -> None:
    """Exception text from surrogate-escaped file names would otherwise make the letter unencodable."""
    letter = letter_of(record(), message="bad \udcff name")
    assert CODEC.decode(CODEC.encode(DEAD_LETTER, letter), DEAD_LETTER)["error_message"] == "bad ? name"


def test_a_budget_too_small_to_keep_is_refused() -> None:
    """Below the minimum the bounded fields alone could exceed it: a configuration error, said at once."""
    with pytest.raises(ValueError, match="under 16384 bytes"):
        letter_of(record(), max_bytes=DEAD_LETTER_MIN_BYTES - 1)


SIZES = st.one_of(st.integers(0, 2_000), st.integers(0, 3 * MB))


def blob(size: int, fill: int) -> bytes:
    return bytes([fill]) * size


TEXT_UNIT = st.text(min_size=1, max_size=4)  # repeated: big, multi-byte text without a slow strategy


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.builds(blob, SIZES, st.integers(0, 255)),
    key=st.one_of(st.none(), st.builds(blob, SIZES, st.integers(0, 255))),
    headers=st.lists(st.tuples(st.text(max_size=300), st.builds(blob, SIZES, st.just(104))), max_size=6),
    message=st.builds(lambda unit, n: unit * n, TEXT_UNIT, st.integers(0, 50_000)),
    names=st.builds(lambda unit, n: unit * n, TEXT_UNIT, st.integers(1, 200)),
    max_bytes=st.one_of(st.just(DEAD_LETTER_MAX_BYTES), st.integers(DEAD_LETTER_MIN_BYTES, 2 * MB)),
)
def test_the_encoded_letter_never_exceeds_the_budget(
    value: bytes,
    key: bytes | None,
    headers: list[tuple[str, bytes]],
    message: str,
    names: str,
    max_bytes: int,
) -> None:
    """Whatever the record and error, the encoded letter fits, decodes, and keeps prefixes of the original."""
    rec = Record(names, 0, 7, key, value, headers)
    failure = Failure(names, message)
    letter = dead_letter(
        rec, failure, stage=names, failed_at=AT, attempts=6, first_failed_at=AT, max_bytes=max_bytes
    )
    encoded = CODEC.encode(DEAD_LETTER, letter)
    assert len(encoded) <= max_bytes
    decoded = CODEC.decode(encoded, DEAD_LETTER)
    assert (decoded["payload_size"], decoded["payload_sha256"]) == (
        len(value),
        hashlib.sha256(value).hexdigest(),
    )
    assert value.startswith(decoded["payload"])
    assert (key or b"").startswith(decoded["key"] or b"")
    if not decoded["payload_truncated"]:
        assert (decoded["payload"], decoded["key"]) == (value, key)

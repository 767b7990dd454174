"""Which dead letters a command picks, what it skips as undecodable, and what replay refuses (pure)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.delivery.dead_letters import (
    Letter,
    Selection,
    decode_letters,
    dlq_topic,
    refusal,
    split_replayable,
)
from notify_cli.dlq_cmd import _line, _shown, _when, refused_report, skipped_report
from notify_core.codec import CHANNEL_MESSAGE, DEAD_LETTER, default_codec
from notify_core.events import Failure, dead_letter
from notify_core.records import Record
from notify_core.settings import Settings

AT = datetime(2026, 5, 1, 12, tzinfo=UTC)


def letter(error_type: str = "BadDeviceToken", failed_at: datetime = AT) -> dict[str, object]:
    return {"error_type": error_type, "failed_at": failed_at}


@pytest.mark.parametrize(
    ("selection", "matches"),
    [
        (Selection(), True),
        (Selection(reason="BadDeviceToken"), True),
        (Selection(reason="attempts_exhausted"), False),
        (Selection(since=AT), True),  # since is inclusive
        (Selection(since=AT + timedelta(seconds=1)), False),
        (Selection(until=AT), False),  # until is exclusive
        (Selection(until=AT + timedelta(seconds=1)), True),
        (
            Selection(reason="BadDeviceToken", since=AT - timedelta(hours=1), until=AT + timedelta(hours=1)),
            True,
        ),
    ],
)
def test_selection(selection: Selection, matches: bool) -> None:
    assert selection.matches(letter()) is matches


def test_durations_count_back_from_now() -> None:
    before = datetime.now(UTC)
    assert (
        before - timedelta(hours=2, seconds=5)
        < _when("2h")
        <= before - timedelta(hours=2) + timedelta(seconds=5)
    )
    assert _when("2026-05-01T12:00:00+00:00") == AT


def test_a_time_without_zone_is_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="time zone"):
        _when("2026-05-01T12:00:00")


def test_sources_name_their_dead_letter_topics() -> None:
    settings = Settings(topic_prefix="x")
    assert dlq_topic(settings, "requests") == "x.requests.dlq"
    assert dlq_topic(settings, "ios") == "x.ios.dlq"
    with pytest.raises(ValueError, match="unknown dead-letter source"):
        dlq_topic(settings, "pager")


# --- reading: undecodable records are skipped, not fatal --------------------------------------------
CODEC = default_codec()
DLQ = "notifications.ios.dlq"


def channel_message_bytes() -> bytes:
    record = {
        "delivery_id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        "notification_id": "6fa459ea-ee8a-4ca4-894e-db77e160355e",
        "service": "orders",
        "user_id": "u",
        "channel": "IOS",
        "category": "c",
        "priority": "NORMAL",
        "target": "ab" * 32,
        "target_ref": "device:1",
        "locale": "en",
        "template_id": "t",
        "template_version": 1,
        "created_at": AT,
    }
    return CODEC.encode(CHANNEL_MESSAGE, record)


def dlq_record(offset: int, value: bytes | None) -> Record:
    return Record(DLQ, 0, offset, b"u", value)


def letter_bytes(payload: bytes, error_type: str = "attempts_exhausted", **kwargs: Any) -> bytes:
    original = Record("notifications.ios", 0, 9, b"u", payload)
    letter = dead_letter(
        original, Failure(error_type, "six attempts"), stage="worker.ios", failed_at=AT, **kwargs
    )
    return CODEC.encode(DEAD_LETTER, letter)


def test_an_undecodable_record_is_skipped_and_the_rest_still_read() -> None:
    """One stray record on the DLQ used to stop the read, so replay with no filter replayed nothing."""
    records = [
        dlq_record(0, letter_bytes(channel_message_bytes())),
        dlq_record(1, b'{"not": "a dead letter"}'),
        dlq_record(2, None),  # a tombstone
        dlq_record(3, channel_message_bytes()),  # Avro, but not a dead letter
        dlq_record(4, letter_bytes(channel_message_bytes(), "BadDeviceToken")),
    ]
    scan = decode_letters(records, Selection())
    assert [item.record.offset for item in scan.letters] == [0, 4]
    assert [(s.record.offset, s.reason.split(" (")[0]) for s in scan.skipped] == [
        (1, "not an Avro single-object record"),
        (2, "0 bytes is too short for an Avro single-object record"),
        (3, "record is a io.notify.ChannelMessage, expected io.notify.DeadLetter"),
    ]


def test_undecodable_records_are_skipped_whatever_the_selection() -> None:
    """The selection filters letters; skipped records are reported even when nothing matches."""
    scan = decode_letters(
        [dlq_record(0, b"junk"), dlq_record(1, letter_bytes(b"x"))], Selection(reason="none")
    )
    assert (scan.letters, len(scan.skipped)) == ([], 1)


def test_the_skipped_report_counts_and_says_why() -> None:
    """The CLI prints how many were skipped, where they sit and why (the first ten)."""
    scan = decode_letters([dlq_record(i, b"junk") for i in range(12)], Selection())
    report = skipped_report(scan.skipped)
    lines = report.splitlines()
    assert lines[0] == "skipped 12 record(s) that are not dead letters (they do not decode as one):"
    assert lines[1].startswith("  0@0 4 bytes is too short")
    assert lines[-1] == "  ... and 2 more"
    assert len(lines) == 12


# --- replay: refused per letter, never a crash ------------------------------------------------------
def letter_item(value: bytes, **kwargs: Any) -> Letter:
    record = dlq_record(0, letter_bytes(value, **kwargs))
    return Letter(record, CODEC.decode(record.value or b"", DEAD_LETTER))


def test_a_truncated_letter_is_refused_with_the_reason() -> None:
    """A letter cut to fit its budget cannot be replayed byte for byte: refused, the rest replayed."""
    whole = letter_item(channel_message_bytes())
    cut = letter_item(b"\xc3\x01" + b"x" * 40_000, max_bytes=16 * 1024)
    assert cut.letter["payload_truncated"] is True
    reason = refusal(cut.letter, "requests")
    assert reason is not None
    assert reason.startswith("cut to fit the dead-letter size budget (original 40002 bytes, sha256 ")
    assert reason.endswith("): it cannot be replayed byte for byte")
    replayable, refused = split_replayable([cut, whole, cut], "ios")
    assert replayable == [whole]
    assert [r.item for r in refused] == [cut, cut]
    report = refused_report(refused)
    assert report.splitlines()[0] == "refused 2 dead letter(s) that cannot be replayed:"
    assert cut.letter["dead_letter_id"] in report


def test_a_channel_letter_whose_payload_is_no_message_is_refused() -> None:
    """A decode_error letter's payload never was a channel message: refused instead of crashing replay."""
    junk = letter_item(b"junk", error_type="decode_error")
    reason = refusal(junk.letter, "ios")
    assert reason is not None
    assert reason.startswith("its payload is not a channel message (")
    assert refusal(junk.letter, "requests") is None  # requests are replayed byte for byte; the router judges
    assert refusal(letter_item(channel_message_bytes()).letter, "ios") is None


def test_a_v1_letter_is_replayable() -> None:
    """Letters written before v2 carry no truncation flag; they are whole."""
    old = CODEC.encode(
        DEAD_LETTER,
        {
            "dead_letter_id": "d",
            "failed_at": AT,
            "stage": "worker.ios",
            "source_topic": "notifications.ios",
            "source_partition": 0,
            "source_offset": 1,
            "payload": channel_message_bytes(),
            "error_type": "attempts_exhausted",
            "error_message": "m",
        },
        version=1,
    )
    assert refusal(CODEC.decode(old, DEAD_LETTER), "ios") is None


def test_list_and_show_flag_a_truncated_letter() -> None:
    """The note ends error_message, past the list line's 80 characters: the line says TRUNCATED."""
    cut = letter_item(b"x" * 40_000, max_bytes=16 * 1024)
    assert " attempts=0 TRUNCATED six attempts" in _line(cut)
    assert " TRUNCATED" not in _line(letter_item(b"x"))
    shown = _shown(cut, "ios")
    kept = len(cut.letter["payload"])
    assert shown["payload"] == f"<truncated: first {kept} of 40000 bytes kept>"
    assert shown["payload_truncated"] is True

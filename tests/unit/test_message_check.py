"""check_message: what a worker refuses before sending, and that its text never echoes the values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.delivery import apns, fcm
from consumers.delivery.message_check import (
    EMAIL_MAX_BYTES,
    IDENTIFIERS,
    INVALID_MESSAGE,
    PAYLOAD_TOO_LARGE,
    SMS_MAX_CHARS,
    WRONG_CHANNEL,
    check_message,
    email_size_estimate,
    push_payload_size,
)
from notify_core.codec import CHANNEL_MESSAGE, default_codec
from notify_core.topics import Channel

SECRET = "alice@example.com"  # stands in for any personal value: must never appear in a Failure
TARGETS = {
    Channel.IOS: ("ab" * 32, "device:17"),
    Channel.ANDROID: ("fcm-token:APA91b", "device:18"),
    Channel.SMS: ("+4915112345678", "contact:19"),
    Channel.EMAIL: (SECRET, "contact:20"),
}


def message(channel: Channel = Channel.IOS, /, **changes: Any) -> dict[str, Any]:
    """A channel message as the router writes it (round-tripped through the codec), then ``changes``."""
    target, ref = TARGETS[channel]
    record = {
        "delivery_id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        "notification_id": "6fa459ea-ee8a-4ca4-894e-db77e160355e",
        "service": "orders",
        "user_id": "user-42",
        "channel": channel.value.upper(),
        "category": "order_update",
        "priority": "NORMAL",
        "target": target,
        "target_ref": ref,
        "locale": "de-DE",
        "template_id": "order_shipped",
        "template_version": 3,
        "title": "Versandt",
        "body": "Ihre Bestellung ist unterwegs.",
        "data": {"order": "42"},
        "sms_text": "Ihre Bestellung ist unterwegs." if channel is Channel.SMS else None,
        "email_subject": "Versandt" if channel is Channel.EMAIL else None,
        "email_html": "<p>Unterwegs</p>" if channel is Channel.EMAIL else None,
        "email_text": "Unterwegs" if channel is Channel.EMAIL else None,
        "attempt": 0,
        "not_before": None,
        "expires_at": None,
        "created_at": datetime(2026, 5, 1, tzinfo=UTC),
    }
    codec = default_codec()
    return codec.decode(codec.encode(CHANNEL_MESSAGE, record), CHANNEL_MESSAGE) | changes


@pytest.mark.parametrize("channel", list(Channel))
def test_a_well_formed_message_passes(channel: Channel) -> None:
    """What the router writes for each channel is sendable by that channel's worker."""
    assert check_message(message(channel), channel) is None


@pytest.mark.parametrize(
    ("channel", "field"),
    [
        (Channel.IOS, "ANDROID"),
        (Channel.ANDROID, "IOS"),
        (Channel.SMS, "EMAIL"),
        (Channel.EMAIL, "UNKNOWN"),
        (Channel.IOS, "ios"),  # the Avro symbol is upper case; anything else is not ours
        (Channel.IOS, None),
    ],
)
def test_another_channels_message_is_wrong_channel(channel: Channel, field: str | None) -> None:
    """A record for another channel (or UNKNOWN, from a newer writer) is refused, not sent."""
    failure = check_message(message(channel, channel=field), channel)
    assert failure is not None
    assert failure.error_type == WRONG_CHANNEL
    assert channel.value in failure.message


BAD_UUIDS = [
    "",
    "not-a-uuid",
    "1B4E28BA-2FA1-41D2-883F-0016D3CCA427",  # upper case is not the canonical form
    "{1b4e28ba-2fa1-41d2-883f-0016d3cca427}",
    "1b4e28ba2fa141d2883f0016d3cca427",
    "1b4e28ba-2fa1-41d2-883f-0016d3cca427\n",
    "1b4e28ba-2fa1-41d2-883f-0016d3cca427 ",
]


@pytest.mark.parametrize("field", ["delivery_id", "notification_id"])
@pytest.mark.parametrize("value", BAD_UUIDS)
def test_ids_must_be_canonical_uuids(field: str, value: str) -> None:
    """delivery_id and notification_id are the log's keys: only the canonical UUID text passes."""
    failure = check_message(message(**{field: value}), Channel.IOS)
    assert failure is not None
    assert (failure.error_type, failure.message.split()[0]) == (INVALID_MESSAGE, field)


@pytest.mark.parametrize("field", IDENTIFIERS)
@pytest.mark.parametrize(("char", "code"), [("\x00", "U+0000"), ("\n", "U+000A"), ("\x7f", "U+007F")])
def test_control_characters_in_identifiers(field: str, char: str, code: str) -> None:
    """A NUL in delivery_id stopped the worker (PostgreSQL refuses it); every identifier is checked,
    and the text gives the code point, never the raw character or the value around it."""
    value = f"{SECRET[:5]}{char}{SECRET[5:]}"
    failure = check_message(message(**{field: value}), Channel.IOS)
    assert failure is not None
    assert failure.error_type == INVALID_MESSAGE
    assert failure.message == f"{field} contains control character {code} at 5"


@pytest.mark.parametrize(
    ("channel", "ref", "problem"),
    [
        (Channel.IOS, "device:", "is not"),
        (Channel.IOS, "device:12a", "is not"),
        (Channel.IOS, "device:-1", "is not"),
        (Channel.IOS, "device:1234567890123456789", "is not"),  # 19 digits: over a bigint
        (Channel.IOS, "device:١٢", "is not"),  # Arabic-Indic digits are digits to \d, not to us
        (Channel.IOS, "Device:1", "is not"),
        (Channel.IOS, "user:1", "is not"),
        (Channel.IOS, "contact:1", "names a contact"),
        (Channel.ANDROID, "contact:1", "names a contact"),
        (Channel.SMS, "device:1", "names a device"),
        (Channel.EMAIL, "device:1", "names a device"),
    ],
)
def test_target_ref_must_name_this_channels_kind(channel: Channel, ref: str, problem: str) -> None:
    """Deactivation parses target_ref after the send; a malformed one is refused before it instead."""
    failure = check_message(message(channel, target_ref=ref), channel)
    assert failure is not None
    assert failure.error_type == INVALID_MESSAGE
    assert failure.message.startswith(f"target_ref {problem}")


@pytest.mark.parametrize("target", ["", "   "])
def test_empty_target(target: str) -> None:
    """A delivery with nowhere to go is refused."""
    assert check_message(message(target=target), Channel.IOS) == check_message(
        message(Channel.EMAIL, target=target), Channel.EMAIL
    )
    failure = check_message(message(target=target), Channel.IOS)
    assert failure is not None
    assert (failure.error_type, failure.message) == (INVALID_MESSAGE, "target is empty")


@pytest.mark.parametrize(
    ("channel", "changes", "field"),
    [
        (Channel.IOS, {"title": f"{SECRET}\x00"}, "title"),
        (Channel.IOS, {"body": f"{SECRET}\x00"}, "body"),
        (Channel.IOS, {"target": f"{SECRET}\x00"}, "target"),
        (Channel.SMS, {"sms_text": f"{SECRET}\x00"}, "sms_text"),
        (Channel.EMAIL, {"email_subject": f"{SECRET}\x00"}, "email_subject"),
        (Channel.EMAIL, {"email_html": f"{SECRET}\x00"}, "email_html"),
        (Channel.EMAIL, {"email_text": f"{SECRET}\x00"}, "email_text"),
        (Channel.ANDROID, {"data": {"a": "b", f"{SECRET}\x00": "v"}}, "data entry 1"),
        (Channel.ANDROID, {"data": {"a": f"{SECRET}\x00"}}, "data entry 0"),
    ],
)
def test_nul_in_text_fields(channel: Channel, changes: dict[str, Any], field: str) -> None:
    """Text may hold line breaks, never NUL; the text names the field (or data entry), not its value."""
    failure = check_message(message(channel, **changes), channel)
    assert failure is not None
    assert failure.error_type == INVALID_MESSAGE
    assert failure.message.startswith(f"{field} contains a NUL character")
    assert SECRET not in failure.message
    assert "\x00" not in failure.message


def test_line_breaks_and_tabs_in_text_are_fine() -> None:
    """Only identifiers refuse every control character; content keeps its formatting."""
    changes = {"body": "line 1\nline 2\tend", "data": {"note": "a\r\nb"}}
    assert check_message(message(**changes), Channel.IOS) is None


@pytest.mark.parametrize(
    ("channel", "changes", "limit"),
    [
        (Channel.IOS, {"data": {"blob": "x" * 4100}}, "over 4096"),
        (Channel.IOS, {"body": "ü" * 2100}, "over 4096"),  # 2 bytes each in UTF-8
        (Channel.ANDROID, {"data": {"blob": "x" * 4100}}, "over 4096"),
        (Channel.ANDROID, {"title": "x" * 3000, "body": "y" * 1100}, "over 4096"),
        (Channel.SMS, {"sms_text": "x" * (SMS_MAX_CHARS + 1)}, f"over {SMS_MAX_CHARS}"),
        (Channel.EMAIL, {"email_html": "x" * 7_600_000}, f"over {EMAIL_MAX_BYTES}"),
    ],
)
def test_content_no_provider_takes_is_payload_too_large(
    channel: Channel, changes: dict[str, Any], limit: str
) -> None:
    """Content over the channel's limit is refused before the provider sees it."""
    failure = check_message(message(channel, **changes), channel)
    assert failure is not None
    assert failure.error_type == PAYLOAD_TOO_LARGE
    assert failure.message.endswith(limit)


@pytest.mark.parametrize(
    ("channel", "changes"),
    [
        (Channel.SMS, {"sms_text": "x" * SMS_MAX_CHARS}),
        (Channel.EMAIL, {"email_html": "x" * 7_000_000}),
        (Channel.SMS, {"data": {"blob": "x" * 10_000}}),  # push data is not what an SMS sends
    ],
)
def test_content_at_the_limit_passes(channel: Channel, changes: dict[str, Any]) -> None:
    """The limits are inclusive, and each channel measures only what it sends."""
    assert check_message(message(channel, **changes), channel) is None


@pytest.mark.parametrize("channel", [Channel.IOS, Channel.ANDROID])
def test_push_size_is_what_the_adapter_sends(channel: Channel) -> None:
    """The estimate is the adapter's own payload: exactly at the limit passes, one byte over does not."""
    base = message(channel, data={"blob": ""})
    room = 4096 - push_payload_size(base, channel)
    at_limit = message(channel, data={"blob": "x" * room})
    assert push_payload_size(at_limit, channel) == 4096
    assert check_message(at_limit, channel) is None
    over = message(channel, data={"blob": "x" * (room + 1)})
    assert check_message(over, channel) is not None
    size = apns.payload_size(at_limit) if channel is Channel.IOS else fcm.payload_size(at_limit)
    assert size == 4096


def test_email_estimate_counts_base64_growth() -> None:
    """3 bytes of content become 4 (plus a CRLF per 76) on top of a header allowance."""
    empty = email_size_estimate({})
    assert email_size_estimate({"email_text": "x" * 300}) == empty + 400 + 2 * 6


def test_missing_fields_are_malformed_not_an_exception() -> None:
    """The check is total: a message missing fields is refused with a reason, never a KeyError."""
    failure = check_message({"channel": "IOS"}, Channel.IOS)
    assert failure is not None
    assert (failure.error_type, failure.message) == (
        INVALID_MESSAGE,
        "delivery_id is missing or not a string",
    )


def test_first_problem_wins() -> None:
    """Channel first, then identifiers, target, text, size: one Failure, the first in that order."""
    bad = message(channel="SMS", delivery_id="x", data={"blob": "x" * 5000})
    failure = check_message(bad, Channel.IOS)
    assert failure is not None
    assert failure.error_type == WRONG_CHANNEL
    failure = check_message(bad | {"channel": "IOS"}, Channel.IOS)
    assert failure is not None
    assert failure.message.startswith("delivery_id")

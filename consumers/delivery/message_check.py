"""What a decoded channel message must pass before a worker sends it (pure).

The codec only proves a record fits the schema. These checks catch what would otherwise fail late
or loudly: a NUL in ``delivery_id`` (PostgreSQL refuses it and the worker stopped), a malformed
``target_ref`` (a ``ValueError`` when deactivating, after the send), a record routed to the wrong
channel (sent anyway), and content no provider takes (retried until it could not even be
dead-lettered). ``check_message`` returns the first problem as a ``Failure`` for the dead letter;
its text names fields and limits, never their values (personal data) or raw control characters.

Codes: ``wrong_channel``, ``invalid_message``, ``payload_too_large``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from consumers.delivery import apns, fcm
from notify_core.events import Failure
from notify_core.topics import Channel

WRONG_CHANNEL = "wrong_channel"
INVALID_MESSAGE = "invalid_message"
PAYLOAD_TOO_LARGE = "payload_too_large"

# Push: the provider's own limit on the JSON payload its adapter builds (APNs 4096, FCM 4096).
PUSH_MAX_PAYLOAD_BYTES = {Channel.IOS: apns.MAX_PAYLOAD_BYTES, Channel.ANDROID: fcm.MAX_PAYLOAD_BYTES}
# SNS: "The total size limit for a single SMS Publish action is 1,600 characters."
SMS_MAX_CHARS = 1600
# The usual ceiling for one message: SES's 10 MB, and what most receiving MTAs accept (Postfix's
# default message_size_limit is 10 240 000). Compared with an estimate of the encoded message.
EMAIL_MAX_BYTES = 10_000_000
EMAIL_HEADER_ALLOWANCE = 4096  # From, To, Date, Message-ID, List-Unsubscribe, MIME headers

IDENTIFIERS = (
    "delivery_id",
    "notification_id",
    "user_id",
    "service",
    "category",
    "template_id",
    "locale",
    "target_ref",
)
TEXTS = ("title", "body", "sms_text", "email_subject", "email_html", "email_text", "target")
UUID_FIELDS = ("delivery_id", "notification_id")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TARGET_REF = re.compile(r"(device|contact):[0-9]{1,18}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 (Unicode category Cc)
_REF_KIND = {
    Channel.IOS: "device",
    Channel.ANDROID: "device",
    Channel.SMS: "contact",
    Channel.EMAIL: "contact",
}


def check_message(message: Mapping[str, Any], channel: Channel) -> Failure | None:
    """The first reason ``message`` must not be sent by ``channel``'s worker, or None.

    ``message`` is a decoded ``channel_message``; a missing field counts as malformed, never raises.
    """
    if message.get("channel") != channel.value.upper():
        return Failure(WRONG_CHANNEL, f"a message for another channel reached the {channel.value} worker")
    return _identifiers(message) or _target(message, channel) or _texts(message) or _size(message, channel)


def _invalid(text: str) -> Failure:
    return Failure(INVALID_MESSAGE, text)


def _identifiers(message: Mapping[str, Any]) -> Failure | None:
    for name in IDENTIFIERS:
        value = message.get(name)
        if not isinstance(value, str):
            return _invalid(f"{name} is missing or not a string")
        control = _CONTROL.search(value)
        if control is not None:
            return _invalid(
                f"{name} contains control character {_code(control.group())} at {control.start()}"
            )
    for name in UUID_FIELDS:
        if not _UUID.fullmatch(message[name]):
            return _invalid(f"{name} is not a canonical UUID (lower-case 8-4-4-4-12 hex)")
    return None


def _target(message: Mapping[str, Any], channel: Channel) -> Failure | None:
    ref = _TARGET_REF.fullmatch(message["target_ref"])
    if ref is None:
        return _invalid("target_ref is not 'device:<id>' or 'contact:<id>' (id: 1 to 18 digits)")
    if ref.group(1) != _REF_KIND[channel]:
        return _invalid(
            f"target_ref names a {ref.group(1)}; {channel.value} delivers to a {_REF_KIND[channel]}"
        )
    target = message.get("target")
    if not isinstance(target, str) or not target.strip():
        return _invalid("target is empty")
    return None


def _texts(message: Mapping[str, Any]) -> Failure | None:
    # Text may hold line breaks and tabs; only NUL is refused (PostgreSQL and most providers cut at it).
    for name in TEXTS:
        value = message.get(name)
        if value is not None and not isinstance(value, str):
            return _invalid(f"{name} is not a string")
        if value and "\x00" in value:
            return _invalid(f"{name} contains a NUL character at {value.index(chr(0))}")
    data = message.get("data") or {}
    if not isinstance(data, Mapping):
        return _invalid("data is not a map")
    for index, (key, value) in enumerate(data.items()):
        if not isinstance(key, str) or not isinstance(value, str):
            return _invalid(f"data entry {index} is not a string pair")
        if "\x00" in key or "\x00" in value:
            return _invalid(
                f"data entry {index} contains a NUL character in its {'key' if chr(0) in key else 'value'}"
            )
    return None


def _size(message: Mapping[str, Any], channel: Channel) -> Failure | None:
    if channel in PUSH_MAX_PAYLOAD_BYTES:
        limit = PUSH_MAX_PAYLOAD_BYTES[channel]
        size = push_payload_size(message, channel)
        if size > limit:
            return Failure(PAYLOAD_TOO_LARGE, f"{channel.value} payload of {size} bytes is over {limit}")
    elif channel is Channel.SMS:
        length = len(message.get("sms_text") or "")
        if length > SMS_MAX_CHARS:
            return Failure(PAYLOAD_TOO_LARGE, f"sms_text of {length} characters is over {SMS_MAX_CHARS}")
    else:
        size = email_size_estimate(message)
        if size > EMAIL_MAX_BYTES:
            return Failure(PAYLOAD_TOO_LARGE, f"e-mail of about {size} bytes is over {EMAIL_MAX_BYTES}")
    return None


def push_payload_size(message: Mapping[str, Any], channel: Channel) -> int:
    """Bytes of the payload the push adapter would send, counted the provider's way."""
    # The adapters read title, body and target unguarded; a message without them is still measured.
    complete = {"title": None, "body": None, "target": "", **message}
    return apns.payload_size(complete) if channel is Channel.IOS else fcm.payload_size(complete)


def email_size_estimate(message: Mapping[str, Any]) -> int:
    """About the encoded size of the e-mail: each part base64-encoded (4 bytes per 3, CRLF per 76).

    The adapter picks quoted-printable or base64 per part; base64 is the usual worst case. A part
    whose non-ASCII text starts late can come out larger as quoted-printable; the SMTP server's 552
    stays the backstop for those.
    """
    parts = (message.get(name) or "" for name in ("email_subject", "email_html", "email_text"))
    total = EMAIL_HEADER_ALLOWANCE
    for part in parts:
        encoded = 4 * -(-len(str(part).encode("utf-8", "surrogatepass")) // 3)
        total += encoded + 2 * -(-encoded // 76)
    return total


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"

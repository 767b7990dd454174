"""The user-change record: what the API publishes and what every router's listener reads back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notify_core.codec import EVENT, USER_CHANGE, default_codec
from notify_core.exceptions import DecodeError, InvalidUserData
from notify_core.userdata.changes import UserChange, changed_user, decode_change, encode_change

AT = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def test_a_change_round_trips_keyed_by_user_id() -> None:
    """The key is the user id (so compaction keeps each user's latest change); the value decodes to
    the user, the time to the millisecond and the kinds, de-duplicated and sorted."""
    key, value = encode_change("u-1", ["preferences", "contacts", "preferences"], AT)
    assert key == b"u-1"
    assert value[2:10] == default_codec().fingerprint(USER_CHANGE)
    assert decode_change(value) == UserChange("u-1", AT, ("contacts", "preferences"))
    assert changed_user(key, value) == "u-1"


def test_a_bad_change_is_refused_before_anything_is_sent() -> None:
    """No user, no kind, or a kind the routers do not know (a typo) is refused by the writer."""
    with pytest.raises(InvalidUserData, match="user_id"):
        encode_change("", ["user"], AT)
    with pytest.raises(InvalidUserData, match=r"\[\]"):
        encode_change("u-1", [], AT)
    with pytest.raises(InvalidUserData, match="prefrences"):
        encode_change("u-1", ["prefrences"], AT)


def test_a_record_that_is_not_a_change_raises_decode_error() -> None:
    """What the listener logs and skips: garbage, truncated bytes, another schema's record."""
    _, value = encode_change("u-1", ["devices"], AT)
    event = default_codec().encode(
        EVENT,
        {
            "event_id": "e",
            "event_type": "ROUTED",
            "occurred_at": AT,
            "notification_id": "n",
            "user_id": "u-1",
        },
    )
    for bad in (b"not avro", value[:-3], event):
        with pytest.raises(DecodeError):
            changed_user(b"u-1", bad)


def test_a_tombstone_invalidates_the_user_it_is_keyed_by() -> None:
    """A record without a value (a user erased from the compacted topic) still names its user;
    one with neither value nor a readable key names nobody."""
    assert changed_user(b"u-9", None) == "u-9"
    for key in (None, b"", b"\xff\xfe"):
        with pytest.raises(DecodeError):
            changed_user(key, None)

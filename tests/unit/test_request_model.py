"""The SDK refuses bad requests with an error naming every bad field, and fills what it can."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import pytest

from consumers.router.policy import quiet_end
from notify_core import request_model
from notify_core.codec import REQUEST, default_codec
from notify_core.exceptions import InvalidRequestError
from notify_core.request_model import (
    EARLIEST,
    LATEST,
    MAX_IDEMPOTENCY_KEY,
    MAX_LOCALE,
    MAX_METADATA,
    MAX_METADATA_KEY,
    MAX_METADATA_VALUE,
    MAX_NAME,
    MAX_PARAM_KEY,
    MAX_PARAM_STRING,
    MAX_PARAMS,
    MAX_PAYLOAD_BYTES,
    MAX_PROBLEMS,
    MAX_REQUEST_BYTES,
    MAX_SCHEDULE_AHEAD,
    MAX_TEMPLATE_ID,
    MAX_USER_ID,
    NON_STRING_BYTES,
    NotificationRequest,
)
from notify_core.userdata.models import QuietHours

CODEC = default_codec()


def valid(**overrides: Any) -> dict[str, Any]:
    return {
        "user_id": "u-1",
        "template_id": "order-shipped",
        "service": "orders",
        "category": "transactional",
        **overrides,
    }


def test_ids_and_timestamps_are_filled() -> None:
    a, b = NotificationRequest.parse(valid()), NotificationRequest.parse(valid())
    assert a.notification_id != b.notification_id
    assert a.created_at.tzinfo is not None
    assert a.created_at.microsecond % 1000 == 0


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(user_id="", service="Bad Name", channels=["pager"], prioriti="high"))
    fields = {path.split(".")[0] for path, _ in caught.value.problems}
    assert fields == {"user_id", "service", "channels", "prioriti"}
    assert "user_id" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channels": ["ios", "ios"]}, "channels"),
        ({"params": {"n": 2**63}}, "params"),
        ({"params": {"n": float("nan")}}, "params"),
        ({"params": {"n": [1, 2]}}, "params"),
        ({"locale": "english"}, "locale"),
        ({"send_at": "2030-01-01T00:00:00"}, "send_at"),
        ({"priority": "urgent"}, "priority"),
        ({"template_id": "has space"}, "template_id"),
    ],
)
def test_bad_values_are_refused(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field):
        NotificationRequest.parse(valid(**overrides))


def test_expiry_must_be_in_the_future_and_after_send_at() -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(InvalidRequestError, match="expires_at must be in the future"):
        NotificationRequest.parse(valid(expires_at=past))
    soon = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(InvalidRequestError, match="after send_at"):
        NotificationRequest.parse(valid(send_at=soon, expires_at=soon - timedelta(minutes=1)))


def test_batch_index_is_in_the_message() -> None:
    with pytest.raises(InvalidRequestError, match="request #7"):
        NotificationRequest.parse(valid(user_id=""), index=7)


def test_avro_round_trip_of_the_model() -> None:
    request = NotificationRequest.parse(
        valid(channels=["ios", "email"], priority="critical", params={"a": 1, "b": "x", "c": None, "d": 1.5})
    )
    record = request.to_avro()
    assert record["channels"] == ["IOS", "EMAIL"]
    assert record["priority"] == "CRITICAL"
    assert NotificationRequest.from_avro(record) == request


# --- 1. forbidden characters ------------------------------------------------------------------------

CREATED = datetime(2030, 1, 1, tzinfo=UTC)

# One character of every kind an identifier refuses (Cc C0/DEL/C1, Cf, Cs, Co, Zl, Zp, Zs, noncharacter).
IDENTIFIER_FORBIDDEN = {
    "\x00": "a control character",
    "\x1f": "a control character",
    "\x7f": "a control character",
    "\x85": "a control character",
    "\x9f": "a control character",
    "\u200b": "an invisible format character",
    "\ufeff": "an invisible format character",
    "\u202e": "an invisible format character",
    "\u2066": "an invisible format character",
    "\u00ad": "an invisible format character",
    "\U000e0041": "an invisible format character",
    "\ue000": "a private-use character",
    "\u2028": "a line separator",
    "\u2029": "a paragraph separator",
    "\u00a0": "a non-ASCII space",
    "\u3000": "a non-ASCII space",
    "\ufdd0": "a Unicode noncharacter",
    "\uffff": "a Unicode noncharacter",
}


def _identifier_case(field: str, char: str) -> tuple[dict[str, Any], str]:
    """The overrides putting ``char`` at position 2 of identifier ``field``, and the path to expect."""
    value = f"ab{char}cd"
    if field == "locale":
        return {"locale": f"en{char}-US"}, "locale"
    if field in ("params", "metadata"):
        return {field: {value: "v"}}, f"{field}.{value!a}.[key]"
    return {field: value}, field


@pytest.mark.parametrize("char", list(IDENTIFIER_FORBIDDEN), ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    "field",
    ["user_id", "template_id", "service", "category", "idempotency_key", "locale", "params", "metadata"],
)
def test_identifiers_refuse_control_format_and_odd_characters(field: str, char: str) -> None:
    """Every identifier (and every params/metadata key) refuses each kind of forbidden character,
    naming the field, the code point and the position, without repeating the character itself."""
    overrides, path = _identifier_case(field, char)
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(**overrides))
    [(got_path, message)] = caught.value.problems
    assert got_path == path
    assert message == f"contains {IDENTIFIER_FORBIDDEN[char]} U+{ord(char):04X} at position 2"
    assert char not in str(caught.value)


@pytest.mark.parametrize("field", ["user_id", "idempotency_key", "params", "metadata"])
def test_lone_surrogates_are_refused_in_identifiers(field: str) -> None:
    """A lone surrogate cannot be UTF-8 encoded: pydantic already refuses it when reading the str."""
    overrides, _ = _identifier_case(field, "\ud800")
    with pytest.raises(InvalidRequestError, match=field) as caught:
        NotificationRequest.parse(valid(**overrides))
    assert "\ud800" not in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {"user_id": "user 42"},
        {"user_id": "ünïcødé-用户-😀"},
        {"user_id": "alice@example.com"},
        {"idempotency_key": "order:42/shipped"},
        {"params": {"first name": "x"}},
        {"metadata": {"campagne-été": "x"}},
    ],
)
def test_identifiers_accept_printable_unicode_and_plain_spaces(overrides: dict[str, Any]) -> None:
    """Identifiers are not limited to ASCII: printable characters and U+0020 are fine."""
    NotificationRequest.parse(valid(**overrides))


def test_surrounding_whitespace_is_stripped_before_the_check() -> None:
    """``str_strip_whitespace`` runs first: a trailing newline or NEL is stripped, not refused."""
    request = NotificationRequest.parse(valid(user_id="\t u-1\n\x85"))
    assert request.user_id == "u-1"


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        ({"params": {"k": "a\x00b"}}, "params.k", "contains a control character U+0000 at position 1"),
        ({"metadata": {"k": "\x00"}}, "metadata.k", "contains a control character U+0000 at position 0"),
        ({"params": {"k": "ab\ud800"}}, "params.k", "unable to parse raw data as a unicode string"),
        ({"metadata": {"k": "\udfff"}}, "metadata.k", "unable to parse raw data as a unicode string"),
    ],
)
def test_free_text_refuses_nul_and_lone_surrogates(
    overrides: dict[str, Any], path: str, message: str
) -> None:
    """params string values and metadata values refuse NUL (PostgreSQL text cannot hold it) and
    lone surrogates (not UTF-8 encodable), naming the value's path."""
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(**overrides))
    [(got_path, got_message)] = caught.value.problems
    assert got_path == path
    assert message in got_message
    assert "\x00" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "line one\nline two",
        "a\tb\r\nc",
        "bold \x1b[1m",
        "👩\u200d💻",
        "\u202eright to left",
        "\ufeffbom",
        "é" * 10,
    ],
)
def test_free_text_keeps_newlines_tabs_and_other_characters(text: str) -> None:
    """Free text is content: only NUL and surrogates are refused, and the text is kept as given."""
    request = NotificationRequest.parse(valid(params={"k": text}, metadata={"m": text}))
    assert request.params["k"] == text
    assert request.metadata["m"] == text


# --- 2. dates ---------------------------------------------------------------------------------------

MS = timedelta(milliseconds=1)
PLUS_5 = timezone(timedelta(hours=5))
MINUS_5 = timezone(timedelta(hours=-5))


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        ({"created_at": EARLIEST - MS}, "created_at", "must be between 2000-01-01T00:00:00Z"),
        ({"created_at": LATEST + MS}, "created_at", "and 2100-01-01T00:00:00Z"),
        ({"send_at": datetime(1, 1, 1, tzinfo=PLUS_5)}, "send_at", "must be between"),
        ({"expires_at": datetime(9999, 12, 31, 23, tzinfo=MINUS_5)}, "expires_at", "must be between"),
        ({"send_at": datetime(2099, 12, 31, 20, tzinfo=MINUS_5)}, "send_at", "must be between"),
        ({"created_at": datetime(2030, 1, 1)}, "created_at", "timezone"),
        ({"send_at": CREATED + MAX_SCHEDULE_AHEAD + MS}, "send_at", "at most 366 days after created_at"),
        (
            {"expires_at": CREATED + MAX_SCHEDULE_AHEAD + MS},
            "expires_at",
            "at most 366 days after created_at",
        ),
        ({"expires_at": CREATED}, "expires_at", "expires_at must be in the future"),
        (
            {"send_at": CREATED + MS, "expires_at": CREATED + MS},
            "expires_at",
            "expires_at must be after send_at",
        ),
    ],
)
def test_dates_outside_the_window_or_the_horizon_are_refused(
    overrides: dict[str, Any], path: str, message: str
) -> None:
    """Every date lies in [2000-01-01Z, 2100-01-01Z] (compared in any offset, without converting
    first: astimezone itself overflows near year 1 and 9999), and send_at/expires_at at most 366
    days after created_at."""
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(**{"created_at": CREATED, **overrides}))
    assert [(p, m) for p, m in caught.value.problems if p == path and message in m], caught.value.problems


@pytest.mark.parametrize(
    "overrides",
    [
        {"created_at": EARLIEST},
        {"created_at": LATEST},
        {"created_at": LATEST - MAX_SCHEDULE_AHEAD, "send_at": LATEST - MS, "expires_at": LATEST},
        {"send_at": CREATED + MAX_SCHEDULE_AHEAD},
        {"expires_at": CREATED + MAX_SCHEDULE_AHEAD},
        {"send_at": EARLIEST},  # before created_at means "now"; only the window applies
        {  # 06:00Z: the window is checked as an instant, whatever the offset
            "created_at": LATEST - timedelta(days=1),
            "send_at": datetime(2099, 12, 31, 20, tzinfo=timezone(timedelta(hours=14))),
        },
    ],
)
def test_dates_on_the_bounds_are_accepted(overrides: dict[str, Any]) -> None:
    """The window and the horizon are inclusive, and a send_at in the past is fine."""
    NotificationRequest.parse(valid(**{"created_at": CREATED, **overrides}))


def test_validation_of_a_decoded_record_does_not_depend_on_the_clock() -> None:
    """created_at is in the record: an old request with an old expiry is valid (routing drops it
    as expired), and a valid record stays valid whenever the router reads it."""
    record = NotificationRequest.parse(valid(created_at=EARLIEST, expires_at=EARLIEST + MS)).to_avro()
    assert NotificationRequest.from_avro(record).expires_at == EARLIEST + MS


def test_dates_are_kept_as_utc_milliseconds() -> None:
    """An aware datetime in any offset becomes UTC, truncated to what Avro timestamp-millis keeps,
    so the request equals what the router decodes."""
    send_at = datetime(2030, 1, 2, 1, 2, 3, 456_789, tzinfo=timezone(timedelta(hours=2)))
    request = NotificationRequest.parse(valid(created_at=CREATED, send_at=send_at))
    assert request.send_at == datetime(2030, 1, 1, 23, 2, 3, 456_000, tzinfo=UTC)
    assert request.send_at is not None
    assert request.send_at.utcoffset() == timedelta(0)
    decoded = CODEC.decode(CODEC.encode(REQUEST, request.to_avro()), REQUEST)
    assert NotificationRequest.from_avro(decoded) == request


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Etc/GMT+12", "UTC"])
@pytest.mark.parametrize("moment", [EARLIEST, LATEST])
def test_routing_cannot_overflow_on_the_extreme_dates(zone: str, moment: datetime) -> None:
    """quiet_end converts to the user's zone and may add a day (it overflowed for a send_at near
    year 9999 in a UTC+ zone): at the extreme dates an accepted request can hold it cannot, with a
    quiet window that wraps midnight and one that does not, in the farthest zones east and west."""
    for quiet in (QuietHours(time(0, 0), time(23, 59)), QuietHours(time(0, 30), time(0, 15))):
        end = quiet_end(moment, quiet, zone)
        assert end is None or end >= moment


# --- 3. sizes ---------------------------------------------------------------------------------------


def _cut(key: str) -> str:
    """How a too-long key shows in a path: an escaped 16-character prefix and the rest counted."""
    return f"{key[:16]!a}...(+{len(key) - 16} characters)"


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"user_id": "u" * (MAX_USER_ID + 1)}, "user_id"),
        ({"template_id": "t" * (MAX_TEMPLATE_ID + 1)}, "template_id"),
        ({"service": "s" * (MAX_NAME + 1)}, "service"),
        ({"category": "c" * (MAX_NAME + 1)}, "category"),
        ({"idempotency_key": "k" * (MAX_IDEMPOTENCY_KEY + 1)}, "idempotency_key"),
        ({"locale": "en-abcdefgh-abcdefgh-abcdefgh-abcdef"}, "locale"),  # 36 characters
        ({"params": {f"k{i}": i for i in range(MAX_PARAMS + 1)}}, "params"),
        ({"params": {"k" * (MAX_PARAM_KEY + 1): 1}}, f"params.{_cut('k' * (MAX_PARAM_KEY + 1))}.[key]"),
        ({"params": {"k": "x" * (MAX_PARAM_STRING + 1)}}, "params.k"),
        ({"metadata": {f"k{i}": "v" for i in range(MAX_METADATA + 1)}}, "metadata"),
        (
            {"metadata": {"k" * (MAX_METADATA_KEY + 1): "v"}},
            f"metadata.{_cut('k' * (MAX_METADATA_KEY + 1))}.[key]",
        ),
        ({"metadata": {"k": "v" * (MAX_METADATA_VALUE + 1)}}, "metadata.k"),
        ({"params": {f"k{i}": "x" * 9_000 for i in range(4)}}, "params"),
        ({"params": {f"k{i}": "é" * MAX_PARAM_STRING for i in range(2)}}, "params"),  # bytes, not characters
        ({"metadata": {f"m{i}": "v" * MAX_METADATA_VALUE for i in range(MAX_METADATA)}}, "metadata"),
    ],
)
def test_every_string_and_map_has_a_limit(overrides: dict[str, Any], path: str) -> None:
    """Each string and map is bounded, and params + metadata share a 32 KiB UTF-8 budget (counted
    in bytes: 2 x 10,000 "é" is over it); the error names the field (for the shared budget, the
    larger of params and metadata)."""
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(**overrides))
    assert [p for p, _ in caught.value.problems] == [path]


def _biggest_request() -> NotificationRequest:
    """A request at every limit at once, with 4-byte characters where the field allows them."""
    emoji = "😀"
    value_chars = (MAX_PAYLOAD_BYTES - 100 * (3 + NON_STRING_BYTES)) // 4 // 3  # three long values
    params: dict[str, Any] = {f"k{i:02}": i for i in range(MAX_PARAMS - 3)}
    params.update({f"s{i:02}": emoji * value_chars for i in range(3)})
    return NotificationRequest.parse(
        valid(
            user_id=emoji * MAX_USER_ID,
            template_id="t" * MAX_TEMPLATE_ID,
            service="s" * MAX_NAME,
            category="c" * MAX_NAME,
            idempotency_key=emoji * MAX_IDEMPOTENCY_KEY,
            locale="en-abcdefgh-abcdefgh-abcdefgh-abcde",
            channels=["ios", "android", "sms", "email"],
            params=params,
            send_at=CREATED + MAX_SCHEDULE_AHEAD - MS,
            expires_at=CREATED + MAX_SCHEDULE_AHEAD,
            created_at=CREATED,
        )
    )


def test_the_biggest_accepted_request_is_far_below_kafkas_message_limit() -> None:
    """At every limit at once, a request encodes to under 37 KiB of Avro: it and its dead letter
    (the same bytes plus a bounded error) fit Kafka's 1 MB message limit many times over."""
    request = _biggest_request()
    assert request.locale is not None
    assert len(request.locale) == MAX_LOCALE
    encoded = CODEC.encode(REQUEST, request.to_avro())
    assert MAX_PAYLOAD_BYTES - 1024 < len(encoded) < MAX_REQUEST_BYTES + 1024
    assert NotificationRequest.from_avro(CODEC.decode(encoded, REQUEST)) == request


def test_the_whole_request_budget_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole-request budget is implied by the field limits today; it is still enforced, so that
    raising one field's limit cannot silently grow requests past it."""
    monkeypatch.setattr(request_model, "MAX_REQUEST_BYTES", 200)
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(params={"k": "x" * 150}))
    [(path, message)] = caught.value.problems
    assert path == "request"
    assert "more than the 200 allowed" in message


# --- 4. error messages --------------------------------------------------------------------------------

SECRET = "SECRET-VALUE"


@pytest.mark.parametrize(
    "overrides",
    [
        {"user_id": SECRET + "\x00" * 1_000_000},
        {"user_id": SECRET + "\x00"},
        {"params": {"k": SECRET + "x" * 1_000_000}},
        {"params": {"k": SECRET + "\x00"}},
        {"metadata": {"k": SECRET + "\x00"}},
        {"notification_id": SECRET + "\x00"},
        {"locale": SECRET},
        {"priority": SECRET},
        {"channels": [SECRET]},
        {"send_at": SECRET},
    ],
)
def test_error_messages_describe_bad_values_without_repeating_them(overrides: dict[str, Any]) -> None:
    """A bad value can be huge or hold control characters: it is described, never echoed."""
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(**overrides))
    message = str(caught.value)
    assert SECRET not in message
    assert message.isprintable()
    assert len(message) < 300


def test_hostile_keys_are_shown_escaped_and_cut() -> None:
    """A map key or unknown field name is part of the path: a bad one is shown as an escaped,
    bounded prefix (printable, no control character), never raw."""
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse({**valid(params={"\x00" * 500_000: 1}), "\u202e" * 300: 1})
    paths = [path for path, _ in caught.value.problems]
    assert paths == [
        "params.'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'"
        "...(+499984 characters).[key]",
        "'\\u202e\\u202e\\u202e\\u202e\\u202e\\u202e\\u202e\\u202e\\u202e\\u202e\\u202e\\u202e"
        "\\u202e\\u202e\\u202e\\u202e'...(+284 characters)",
    ]
    assert str(caught.value).isprintable()


def test_the_number_of_problems_listed_is_bounded() -> None:
    """Thousands of bad entries give MAX_PROBLEMS problems and a count of the rest, so the error
    (and a dead letter quoting it) stays small."""
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(params={f"\x00{i}": 1 for i in range(5_000)}))
    problems = caught.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1] == ("request", f"{5_000 - MAX_PROBLEMS} more problems not listed")
    assert len(str(caught.value)) < 4096


def test_a_param_of_the_wrong_type_is_one_problem() -> None:
    """The params union is tagged by Python type: a wrong type gets one problem, not one per branch,
    and the path names the param (not the branch it was checked as)."""
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(params={"a": [1], "b": b"x", "c": 2**63}))
    assert [path for path, _ in caught.value.problems] == ["params.a", "params.b", "params.c"]


# --- 5. only InvalidRequestError ------------------------------------------------------------------------


def _record(**overrides: Any) -> dict[str, Any]:
    return {**NotificationRequest.parse(valid(created_at=CREATED)).to_avro(), **overrides}


class _Exploding(Mapping[str, Any]):
    """A mapping that fails when read, as a hostile caller could pass."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 4


@pytest.mark.parametrize(
    ("record", "path"),
    [
        (_record(priority="UNKNOWN"), "priority"),
        (_record(priority=None), "priority"),
        (_record(priority=3), "priority"),
        (_record(channels=None), "channels"),
        (_record(channels="IOS"), "channels"),
        (_record(channels=[1]), "channels.0"),
        (_record(channels=["UNKNOWN"]), "channels.0"),
        (_record(channels=["IOS", "IOS"]), "channels"),
        (_record(params={"k": b"bytes"}), "params.k"),
        (_record(params={"k": {"nested": 1}}), "params.k"),
        (_record(params=None), "params"),
        (_record(created_at=datetime(2030, 1, 1)), "created_at"),
        (_record(created_at=datetime(9999, 12, 31, tzinfo=UTC)), "created_at"),
        (_record(created_at="yesterday"), "created_at"),
        (_record(notification_id="not-a-uuid"), "notification_id"),
        (_record(user_id=None), "user_id"),
        (_record(extra_field=1), "extra_field"),
        ({k: v for k, v in _record().items() if k != "user_id"}, "user_id"),
    ],
)
def test_from_avro_turns_every_odd_record_into_invalid_request_error(record: Any, path: str) -> None:
    """The router only catches InvalidRequestError: any decoded record that does not validate,
    however odd its fields, must raise exactly that, naming the field."""
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.from_avro(record)
    assert path in [p for p, _ in caught.value.problems], caught.value.problems


@pytest.mark.parametrize("data", [None, 42, "request", [("user_id", "u")], _Exploding()])
def test_parse_and_from_avro_raise_only_invalid_request_error_on_odd_input(data: Any) -> None:
    """Neither a non-mapping nor a mapping that blows up when read escapes as another error type."""
    with pytest.raises(InvalidRequestError):
        NotificationRequest.parse(data)
    with pytest.raises(InvalidRequestError):
        NotificationRequest.from_avro(data)

"""Hostile request values, through both doors: the SDK's ``NotificationRequest.parse`` and the
router's decode step (raw Avro records written with the codec, bypassing the model, then
``parse_records``).

Properties: nothing raises but the documented errors (``InvalidRequestError``; in the router, a
``Rejected`` item with ``decode_error`` or ``invalid_request``), an error is small and printable,
and every accepted request is clean: no forbidden character in an identifier, no NUL or lone
surrogate in any string, dates in the window, within the horizon and unable to overflow routing,
and ``to_avro()`` re-encodes and re-validates to an equal request far below Kafka's 1 MB limit.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.router.batch import Parsed, Rejected, parse_records
from consumers.router.policy import quiet_end
from notify_core.codec import REQUEST, default_codec
from notify_core.exceptions import InvalidRequestError
from notify_core.records import Record
from notify_core.request_model import (
    EARLIEST,
    LATEST,
    MAX_PAYLOAD_BYTES,
    MAX_PROBLEMS,
    MAX_REQUEST_BYTES,
    MAX_SCHEDULE_AHEAD,
    NotificationRequest,
)
from notify_core.userdata.models import QuietHours

CODEC = default_codec()
SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
MAX_ERROR_CHARS = 16 * 1024  # what an InvalidRequestError may print, at most (MAX_PROBLEMS + 1 problems)
MAX_ENCODED_BYTES = MAX_REQUEST_BYTES + 1024  # the budget plus Avro framing (lengths, union indexes)
MS = timedelta(milliseconds=1)

# --- hostile values ---------------------------------------------------------------------------------

SPECIAL_CHARS = [
    *"\x00\x01\x08\t\n\r\x0b\x1b\x1f\x7f\x85\x9f\xa0\xad",  # C0, DEL, C1, NBSP, soft hyphen
    *"\u200b\u200d\u202e\u2066\u2028\u2029\u3000\ufeff",  # zero-width, bidi, separators, BOM
    *"\ufdd0\ufffe\uffff\ue000\U0010fffd\U000e0001\ufffd",  # noncharacters, private use, tags, U+FFFD
    *"\ud800\udfff",  # lone surrogates
    *"é用😀 '\"\\%{}$.-_",
]
CHARS = st.sampled_from(SPECIAL_CHARS) | st.characters(codec=None) | st.sampled_from("abc-._09")
# Long strings are built by repetition (cheap to generate), at and around every limit.
LONG_TEXT = st.builds(
    lambda char, n: char * n,
    st.sampled_from(["x", "é", "😀", "\x00", " ", "\u200b"]),
    st.sampled_from([35, 36, 64, 65, 128, 129, 200, 201, 1024, 1025, 10_000, 10_001, 40_000, 300_000]),
)
# The most dangerous value is valid but for one character: a plain string with one special char inside.
PLAIN = st.text("abc-._09", min_size=1, max_size=8)
SPLICED = st.builds(lambda a, char, b: a + char + b, PLAIN, st.sampled_from(SPECIAL_CHARS), PLAIN)
TEXT = SPLICED | st.text(CHARS, max_size=24) | LONG_TEXT
WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object),
)

OFFSETS = st.sampled_from(
    [timedelta(0), timedelta(hours=14), timedelta(hours=-12), timedelta(hours=23, minutes=59)]
)
ZONES = OFFSETS.map(timezone) | st.sampled_from([UTC, timezone(-timedelta(hours=23, minutes=59))])
EDGES = [
    EARLIEST - MS,
    EARLIEST,
    LATEST,
    LATEST + MS,
    datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
    datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
]
MOMENTS = st.one_of(
    st.sampled_from(EDGES),
    st.datetimes(timezones=ZONES | st.none()),  # year 1 to 9999, naive or aware
    st.datetimes(min_value=datetime(1999, 12, 31), max_value=datetime(2100, 1, 2), timezones=ZONES),
)
DATE_LIKE = MOMENTS | st.sampled_from(["2030-01-01T00:00:00", "9999-12-31T23:59:59+14:00", "soon", ""])
# Relative to created_at: on and around the horizon, and before created_at.
HORIZON_OFFSETS = st.sampled_from(
    [
        MAX_SCHEDULE_AHEAD,
        MAX_SCHEDULE_AHEAD + MS,
        MAX_SCHEDULE_AHEAD - MS,
        MS,
        timedelta(0),
        -MS,
        -timedelta(days=9000),
    ]
)
# Maps at and around the entry limits, the string limits and the 32 KiB budget, up to the 1 MB
# request (100 params of 10,000 characters) that could not be dead-lettered.
BIG_MAPS = st.sampled_from(
    [
        (4, "x" * 8_200),
        (3, "😀" * 2_700),
        (10, "😀" * 1_000),
        (49, "é" * 1_025),
        (50, "x" * 1_024),
        (51, "v"),
        (100, "x" * 300),
        (100, "x" * 10_000),
        (101, 1),
        (1000, None),
    ]
).map(lambda spec: {f"k{i}": spec[1] for i in range(spec[0])})
PARAM_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),  # nan and infinities included
    TEXT,
    WRONG_TYPES,
)


def _maps(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(PLAIN | TEXT, values, max_size=6) | BIG_MAPS | WRONG_TYPES


HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "user_id": TEXT | WRONG_TYPES,
    "template_id": TEXT | WRONG_TYPES,
    "service": TEXT | WRONG_TYPES,
    "category": TEXT | WRONG_TYPES,
    "idempotency_key": TEXT | WRONG_TYPES,
    "locale": TEXT | st.sampled_from(["en", "pt-BR", "en-abcdefgh-abcdefgh-abcdefgh-abcdef"]) | WRONG_TYPES,
    "priority": st.sampled_from(["low", "critical", "LOW", "urgent", ""]) | TEXT | WRONG_TYPES,
    "channels": st.lists(st.sampled_from(["ios", "sms", "email", "IOS", "pager", None, 1]), max_size=6)
    | WRONG_TYPES,
    "params": _maps(PARAM_VALUES),
    "metadata": _maps(TEXT | WRONG_TYPES),
    "send_at": DATE_LIKE | WRONG_TYPES,
    "expires_at": DATE_LIKE | WRONG_TYPES,
    "created_at": DATE_LIKE | WRONG_TYPES,
    "notification_id": st.uuids() | TEXT | WRONG_TYPES,
}
VALID_CREATED = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


# Where one special character can go: every identifier, and the keys and values of both maps.
LOCATIONS = [
    *("user_id", "template_id", "service", "category", "idempotency_key", "locale"),
    *("params key", "params value", "metadata key", "metadata value"),
]
MODES = st.sampled_from(["fields", "one character", "sizes"])


def _place(target: dict[str, Any], where: str, text: str) -> None:
    """Put ``text`` at ``where`` in a request or a raw record (they share the field names)."""
    field, _, part = where.partition(" ")
    if part == "key":
        target[field] = {text: "v"}
    elif part == "value":
        target[field] = {"k": text}
    else:
        target[field] = text


def _spoil(draw: st.DrawFn, target: dict[str, Any], *, avro: bool) -> None:
    """Make ``target`` hostile in one of three ways: up to three fields set to anything; one special
    character in one place of an otherwise valid request; params and metadata at the size edges."""
    mode = draw(MODES)
    if mode == "one character":
        special = draw(st.sampled_from(SPECIAL_CHARS))
        if avro and unicodedata.category(special) == "Cs":
            special = "?"  # Avro cannot write a surrogate; invalid UTF-8 is spliced in elsewhere
        _place(target, draw(st.sampled_from(LOCATIONS)), draw(PLAIN) + special + draw(PLAIN))
    elif mode == "sizes":
        target["params"] = draw(BIG_MAPS)
        target["metadata"] = draw(st.just({}) | BIG_MAPS.map(lambda m: {k: str(v) for k, v in m.items()}))
    else:
        hostile = AVRO_HOSTILE if avro else HOSTILE
        for field in draw(st.lists(st.sampled_from(sorted(hostile)), max_size=3, unique=True)):
            target[field] = draw(hostile[field])


@st.composite
def sdk_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request made hostile by ``_spoil`` (and sometimes given an unknown field)."""
    created = draw(VALID_CREATED)
    request: dict[str, Any] = {
        "user_id": "u-1",
        "template_id": "order-shipped",
        "service": "orders",
        "category": "transactional",
        "created_at": created,
    }
    for field in ("send_at", "expires_at"):
        if draw(st.booleans()):
            request[field] = _shift(created, draw(HORIZON_OFFSETS))
    _spoil(draw, request, avro=False)
    if draw(st.integers(0, 9)) == 0:
        request[draw(TEXT)] = draw(PARAM_VALUES)
    return request


def _shift(moment: datetime, delta: timedelta) -> datetime:
    # The test's own arithmetic must not overflow near the edges either.
    try:
        return moment + delta
    except OverflowError:
        return moment


# --- raw Avro records, bypassing the model ------------------------------------------------------------

# Avro can only write valid UTF-8: surrogates become "?" here, and invalid UTF-8 is spliced in below.
AVRO_TEXT = TEXT.map(lambda text: text.encode("utf-8", "replace").decode())
AVRO_LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# timestamp-millis: raw longs (from year -292 million to +292 million, and the edges of what
# Python's datetime holds) as well as datetimes.
TIMESTAMPS = st.one_of(
    AVRO_LONGS,
    st.sampled_from([-62135596800001, -62135596800000, 253402300799999, 253402300800000, 0]),
    st.sampled_from(EDGES[:4]),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)),
)
AVRO_PARAM_VALUES = st.one_of(st.none(), st.booleans(), AVRO_LONGS, st.floats(), AVRO_TEXT)
PRIORITIES = st.sampled_from(["LOW", "NORMAL", "HIGH", "CRITICAL", "UNKNOWN"])
CHANNELS = st.lists(st.sampled_from(["IOS", "ANDROID", "SMS", "EMAIL", "UNKNOWN"]), max_size=8)
AVRO_HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "notification_id": AVRO_TEXT | st.uuids().map(str),
    "service": AVRO_TEXT,
    "idempotency_key": st.none() | AVRO_TEXT,
    "user_id": AVRO_TEXT,
    "template_id": AVRO_TEXT,
    "category": AVRO_TEXT,
    "priority": PRIORITIES,
    "channels": CHANNELS,
    "params": st.dictionaries(PLAIN | AVRO_TEXT, AVRO_PARAM_VALUES, max_size=6) | BIG_MAPS,
    "metadata": st.dictionaries(PLAIN | AVRO_TEXT, AVRO_TEXT, max_size=6)
    | BIG_MAPS.map(lambda m: {k: str(v) for k, v in m.items()}),
    "locale": st.none() | AVRO_TEXT,
    "send_at": st.none() | TIMESTAMPS,
    "expires_at": st.none() | TIMESTAMPS,
    "created_at": TIMESTAMPS,
}
# A marker of 12 bytes put in a string field, then replaced by 12 bytes that are not UTF-8 (CESU-8
# surrogates): the framing stays valid and only the text is bad.
MARKER, NOT_UTF8 = "@@MARKER@@@@", b"\xed\xa0\x80" * 4


@st.composite
def raw_records(draw: st.DrawFn) -> bytes:
    """Encoded requests made hostile by ``_spoil`` with any value the Avro schema allows."""
    created = draw(VALID_CREATED)
    record: dict[str, Any] = {
        "notification_id": str(uuid.uuid4()),
        "service": "orders",
        "idempotency_key": None,
        "user_id": "u-1",
        "template_id": "order-shipped",
        "category": "transactional",
        "priority": "NORMAL",
        "channels": [],
        "params": {},
        "metadata": {},
        "locale": None,
        "send_at": _shift(created, draw(HORIZON_OFFSETS)) if draw(st.booleans()) else None,
        "expires_at": None,
        "created_at": created,
    }
    _spoil(draw, record, avro=True)
    corrupt = draw(st.sampled_from([None, None, None, "user_id", "service", "template_id"]))
    if corrupt is not None:
        record[corrupt] = MARKER
    encoded = CODEC.encode(REQUEST, record)  # any record the schema allows must encode
    return encoded.replace(MARKER.encode(), NOT_UTF8, 1) if corrupt else encoded


# --- the properties -----------------------------------------------------------------------------------

IDENTIFIER_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


def _clean_identifier(text: str) -> bool:
    """The identifier rule, stated independently of the module's implementation."""
    return not any(
        unicodedata.category(c) in IDENTIFIER_CATEGORIES
        or (unicodedata.category(c) == "Zs" and c != " ")
        or 0xFDD0 <= ord(c) <= 0xFDEF
        or ord(c) & 0xFFFE == 0xFFFE
        for c in text
    )


def _clean_text(text: str) -> bool:
    """No NUL (PostgreSQL refuses it) and no lone surrogate (not UTF-8 encodable)."""
    return "\x00" not in text and not any(unicodedata.category(c) == "Cs" for c in text)


def _payload_bytes(request: NotificationRequest) -> int:
    """The documented params + metadata count: UTF-8 bytes of keys and strings, 10 per other value."""
    values = [*request.params.values(), *request.metadata.values()]
    text = [*request.params, *request.metadata] + [v for v in values if isinstance(v, str)]
    return sum(len(t.encode()) for t in text) + 10 * sum(not isinstance(v, str) for v in values)


def check_accepted(request: NotificationRequest) -> None:
    """Every promise the model makes about a request it accepted."""
    identifiers = [request.user_id, request.template_id, request.service, request.category]
    identifiers += [t for t in (request.idempotency_key, request.locale) if t is not None]
    identifiers += [*request.params, *request.metadata]
    assert all(_clean_identifier(t) for t in identifiers), identifiers
    texts = [v for v in request.params.values() if isinstance(v, str)] + list(request.metadata.values())
    assert all(_clean_text(t) for t in identifiers + texts)

    dates = [d for d in (request.created_at, request.send_at, request.expires_at) if d is not None]
    for moment in dates:
        assert EARLIEST <= moment <= LATEST
        assert moment.utcoffset() == timedelta(0)
        assert moment.microsecond % 1000 == 0
        for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):  # routing's date arithmetic cannot overflow
            quiet_end(moment, QuietHours(time(0, 30), time(0, 15)), zone)
    for later in (request.send_at, request.expires_at):
        assert later is None or later - request.created_at <= MAX_SCHEDULE_AHEAD

    assert _payload_bytes(request) <= MAX_PAYLOAD_BYTES
    encoded = CODEC.encode(REQUEST, request.to_avro())
    assert len(encoded) <= MAX_ENCODED_BYTES
    assert NotificationRequest.from_avro(CODEC.decode(encoded, REQUEST)) == request


def check_refused(error: InvalidRequestError) -> None:
    """A refusal is bounded and printable, whatever the input held."""
    message = str(error)
    assert 0 < len(error.problems) <= MAX_PROBLEMS + 1
    assert len(message) <= MAX_ERROR_CHARS
    assert message.isprintable()  # no raw control character, NUL or surrogate from the input


@SETTINGS
@given(sdk_requests())
def test_the_sdk_accepts_only_clean_requests_and_refuses_the_rest_with_invalid_request_error(
    data: dict[str, Any],
) -> None:
    """parse raises nothing but InvalidRequestError, and what it accepts is clean."""
    try:
        request = NotificationRequest.parse(data)
    except InvalidRequestError as error:
        check_refused(error)
        return
    check_accepted(request)


@SETTINGS
@given(st.lists(raw_records(), min_size=1, max_size=3))
def test_the_router_parses_any_record_into_a_clean_request_or_a_rejection(values: list[bytes]) -> None:
    """parse_records never raises on what the codec can carry: each record is a clean request, or
    rejected as decode_error (not readable: bad UTF-8, a timestamp Python cannot hold) or as
    invalid_request with a small, printable reason."""
    records = [Record("requests", 0, offset, b"u-1", value) for offset, value in enumerate(values)]
    items = parse_records(records, lambda value: CODEC.decode(value, REQUEST))
    assert [item.record for item in items] == records
    for item in items:
        if isinstance(item, Parsed):
            check_accepted(item.request)
            continue
        assert isinstance(item, Rejected)
        assert item.failure.error_type in {"decode_error", "invalid_request"}
        if item.failure.error_type == "invalid_request":
            assert len(item.failure.message) <= MAX_ERROR_CHARS
            assert item.failure.message.isprintable()


def test_the_generators_reach_both_outcomes() -> None:
    """The properties above are only worth something if both doors see accepted and refused input."""
    seen: dict[str, set[str]] = {"sdk": set(), "router": set()}

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    @given(sdk_requests(), raw_records())
    def sample(data: dict[str, Any], value: bytes) -> None:
        try:
            NotificationRequest.parse(data)
            seen["sdk"].add("accepted")
        except InvalidRequestError:
            seen["sdk"].add("refused")
        [item] = parse_records([Record("requests", 0, 0, None, value)], lambda v: CODEC.decode(v, REQUEST))
        seen["router"].add(item.failure.error_type if isinstance(item, Rejected) else "accepted")

    sample()
    assert seen["sdk"] == {"accepted", "refused"}
    assert seen["router"] == {"accepted", "decode_error", "invalid_request"}

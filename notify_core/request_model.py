"""The notification request: one validated pydantic model, shared by the SDK, the router and the HTTP API.

It mirrors ``schemas/notification_request.v1.avsc``; ``to_avro`` gives the record the codec writes.
Every field that the SDK can fill (id, timestamps) is filled here, so one object is what is sent.
The router validates every decoded record with the same model (``from_avro``), so the SDK and the
router apply the same rules, and the validation depends on the record alone (never on the wall
clock: ``created_at`` is in the record).

Limits (the README quotes this table)::

    field                      rule
    -------------------------  -----------------------------------------------------------------
    user_id                    1-128 characters, identifier
    template_id                1-128 characters, identifier, [A-Za-z0-9._-]+
    service, category          1-64 characters, identifier, [a-z0-9][a-z0-9._-]*
    idempotency_key            optional, 1-200 characters, identifier
    locale                     optional, at most 35 characters, identifier, BCP 47-ish (en, pt-BR)
    priority                   low, normal, high, critical
    channels                   at most 4, no repeats
    params                     at most 100 entries; key: 1-128 characters, identifier;
                               value: null, boolean, 64-bit integer, finite double, or free text
                               of at most 10,000 characters
    metadata                   at most 50 entries; key: 1-128 characters, identifier;
                               value: free text of at most 1,024 characters
    params + metadata          at most 32 KiB (32,768 bytes) together, counted as the UTF-8 bytes
                               of every key and string value, plus 10 bytes per other value
    whole request              at most 36 KiB (36,864 bytes), the same count over every field
    created_at, send_at,       time-zone aware; 2000-01-01T00:00:00Z <= t <= 2100-01-01T00:00:00Z;
      expires_at               kept as UTC, truncated to milliseconds (Avro timestamp-millis)
    send_at, expires_at        at most 366 days after created_at
    expires_at                 after created_at, and after send_at when both are set

    identifier                 no control character (Unicode Cc: C0, DEL, C1), no invisible
                               format character (Cf: U+200B zero-width space, U+FEFF BOM, U+202E
                               and the other bidi controls, U+00AD soft hyphen, ...), no lone
                               surrogate (Cs), no private-use character (Co), no line or paragraph
                               separator (U+2028, U+2029), no space other than U+0020, no Unicode
                               noncharacter (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF)
    free text                  no NUL (U+0000), no lone surrogate (U+D800-U+DFFF); newlines, tabs
                               and every other character are allowed

pydantic itself refuses a lone surrogate in any string ("unable to parse raw data as a unicode
string"); the checks here refuse it too, so the rule does not rest on that alone.

Lengths are in characters (code points), counted after leading and trailing whitespace is
stripped (``str_strip_whitespace``: this applies to free text too). An accepted request encodes
to at most the whole-request budget plus Avro framing, under 37 KiB (about 33 KiB with every
field at its limit), so it and its dead letter stay far below Kafka's 1 MB message limit; and its
dates stay far enough from year 1 and 9999 that routing arithmetic (``astimezone``,
``+ timedelta``) cannot overflow.

A refused request raises ``InvalidRequestError`` (and nothing else) listing at most
``MAX_PROBLEMS`` problems as (field path, message); messages describe a bad value ("contains a
control character U+0000 at position 3", positions counted from 0) and never repeat it.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from notify_core.exceptions import InvalidRequestError
from notify_core.ids import random_uuid
from notify_core.topics import Channel

AVRO_LONG_MIN, AVRO_LONG_MAX = -(2**63), 2**63 - 1

MAX_USER_ID = 128
MAX_TEMPLATE_ID = 128
MAX_NAME = 64  # service, category
MAX_IDEMPOTENCY_KEY = 200
MAX_LOCALE = 35  # RFC 5646 section 4.4.1: 35 characters hold any tag in practical use
MAX_PARAMS = 100
MAX_PARAM_KEY = 128
MAX_PARAM_STRING = 10_000
MAX_METADATA = 50
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 1024
MAX_PAYLOAD_BYTES = 32 * 1024  # params + metadata
MAX_REQUEST_BYTES = 36 * 1024  # every field; implied by the limits above today, kept as a backstop
NON_STRING_BYTES = 10  # what a number, boolean or timestamp counts: the most Avro spends on one

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_SCHEDULE_AHEAD = timedelta(days=366)  # send_at and expires_at, counted from created_at

MAX_PROBLEMS = 20  # listed in one InvalidRequestError; bounds the dead letter of a hostile record

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
TEMPLATE_ID_PATTERN = r"^[A-Za-z0-9._-]+$"
# BCP 47-ish: a language, then optional subtags ("en", "fr-CA", "zh-Hant-TW").
LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

Priority = Literal["low", "normal", "high", "critical"]


# --- forbidden characters ---------------------------------------------------------------------------

# Free text only has to reach PostgreSQL (no NUL in text) and be UTF-8 encodable (no lone surrogate).
_FREE_TEXT_FORBIDDEN = re.compile(r"[\x00\ud800-\udfff]")
_IDENTIFIER_FORBIDDEN = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def _forbidden_kind(char: str) -> str | None:
    """What is wrong with ``char`` in an identifier, or None when it is fine."""
    category = unicodedata.category(char)
    if category in _IDENTIFIER_FORBIDDEN:
        return _IDENTIFIER_FORBIDDEN[category]
    if category == "Zs" and char != " ":
        return "a non-ASCII space"
    code = ord(char)
    if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
        return "a Unicode noncharacter"
    return None


def first_forbidden_char(text: str, *, free_text: bool = False) -> tuple[int, str] | None:
    """The position and character of the first character ``text`` must not contain, or None.

    Identifiers refuse the characters listed in the module docstring; ``free_text`` refuses only
    NUL and lone surrogates. The one check every field of the request goes through.
    """
    if free_text:
        found = _FREE_TEXT_FORBIDDEN.search(text)
        return None if found is None else (found.start(), found.group())
    if text.isprintable():  # the usual case, at C speed: every forbidden character is non-printable
        return None
    return next(((i, char) for i, char in enumerate(text) if _forbidden_kind(char) is not None), None)


def _forbidden(position: int, char: str) -> PydanticCustomError:
    return PydanticCustomError(
        "forbidden_character",
        "contains {kind} {code} at position {position}",
        {
            "kind": _forbidden_kind(char) or "a forbidden character",
            "code": f"U+{ord(char):04X}",
            "position": position,
        },
    )


def _identifier(text: str) -> str:
    if (found := first_forbidden_char(text)) is not None:
        raise _forbidden(*found)
    return text


def _free_text(text: str) -> str:
    if (found := first_forbidden_char(text, free_text=True)) is not None:
        raise _forbidden(*found)
    return text


# Length first (cheap, and a huge value is simply "too long"), then characters, then the pattern,
# so a control character is reported as such rather than as a pattern mismatch.
_Identifier = AfterValidator(_identifier)
_FreeText = AfterValidator(_free_text)
UserId = Annotated[str, Field(min_length=1, max_length=MAX_USER_ID), _Identifier]
TemplateId = Annotated[
    str, Field(min_length=1, max_length=MAX_TEMPLATE_ID), _Identifier, Field(pattern=TEMPLATE_ID_PATTERN)
]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME), _Identifier, Field(pattern=NAME_PATTERN)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY), _Identifier]
Locale = Annotated[str, Field(max_length=MAX_LOCALE), _Identifier, Field(pattern=LOCALE_PATTERN)]
ParamKey = Annotated[str, Field(min_length=1, max_length=MAX_PARAM_KEY), _Identifier]
MetadataKey = Annotated[str, Field(min_length=1, max_length=MAX_METADATA_KEY), _Identifier]
MetadataValue = Annotated[str, Field(max_length=MAX_METADATA_VALUE), _FreeText]


# In order: bool before int, since a bool is an int.
_PARAM_BRANCHES: dict[type, str] = {bool: "boolean", int: "long", float: "double", str: "string"}
_PARAM_TAGS = frozenset({"null", *_PARAM_BRANCHES.values()})


def _avro_type(value: Any) -> str | None:
    """The branch of the Avro params union ``value`` belongs to, or None for any other type."""
    if value is None:
        return "null"
    # An exact type is one dict lookup (this runs for every param); a subclass takes the loop.
    kind = _PARAM_BRANCHES.get(type(value))
    return kind or next((k for t, k in _PARAM_BRANCHES.items() if isinstance(value, t)), None)


# A tagged union: a value of the wrong type gets one clear error instead of one per branch.
ParamValue = Annotated[
    Annotated[None, Tag("null")]
    | Annotated[StrictBool, Tag("boolean")]
    | Annotated[StrictInt, Field(ge=AVRO_LONG_MIN, le=AVRO_LONG_MAX), Tag("long")]
    | Annotated[StrictFloat, Field(allow_inf_nan=False), Tag("double")]
    | Annotated[StrictStr, Field(max_length=MAX_PARAM_STRING), _FreeText, Tag("string")],
    Discriminator(
        _avro_type,
        custom_error_type="param_type",
        custom_error_message="must be null, a boolean, an integer, a number or a string",
    ),
]


def _in_window(value: datetime) -> datetime:
    # Compare before converting: astimezone itself overflows near year 1 and 9999.
    if not EARLIEST <= value <= LATEST:
        raise PydanticCustomError(
            "date_out_of_range",
            "must be between {earliest} and {latest}",
            {"earliest": _iso(EARLIEST), "latest": _iso(LATEST)},
        )
    utc = value.astimezone(UTC)
    # Avro timestamp-millis keeps milliseconds: what is validated is exactly what is read back.
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


Instant = Annotated[AwareDatetime, AfterValidator(_in_window)]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _now() -> datetime:
    # Avro timestamp-millis keeps milliseconds; truncating here makes what we send equal what is read.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _budget_bytes(*values: object) -> int:
    """What ``values`` count against the size budgets: UTF-8 bytes of text, NON_STRING_BYTES otherwise.

    One loop over a worklist (no recursion, concrete types): it runs on every request.
    """
    total, pending = 0, list(values)
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            total += len(value.encode())
        elif isinstance(value, dict):
            pending += value.keys()
            pending += value.values()
        elif isinstance(value, list):
            pending += value
        elif value is not None:
            total += NON_STRING_BYTES
    return total


class NotificationRequest(BaseModel):
    """Notify ``user_id`` with ``template_id`` rendered from ``params``."""

    # hide_input_in_errors: a ValidationError (chained under InvalidRequestError) never shows a value.
    model_config = ConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=True, hide_input_in_errors=True
    )

    user_id: UserId
    template_id: TemplateId
    service: Name
    category: Name
    priority: Priority = "normal"
    channels: list[Channel] = Field(default_factory=list, max_length=len(Channel))
    params: dict[ParamKey, ParamValue] = Field(default_factory=dict, max_length=MAX_PARAMS)
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=MAX_METADATA)
    locale: Locale | None = None
    idempotency_key: IdempotencyKey | None = None
    send_at: Instant | None = None
    expires_at: Instant | None = None
    notification_id: uuid.UUID = Field(default_factory=random_uuid)
    created_at: Instant = Field(default_factory=_now)

    @field_validator("channels")
    @classmethod
    def _channels_unique(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("channels must not repeat")
        return value

    @model_validator(mode="after")
    def _fields_agree(self) -> NotificationRequest:
        problems: list[InitErrorDetails] = []

        def problem(field: str | None, kind: str, message: str) -> None:
            loc: tuple[str, ...] = () if field is None else (field,)
            problems.append({"type": PydanticCustomError(kind, message), "loc": loc, "input": None})

        horizon = self.created_at + MAX_SCHEDULE_AHEAD  # created_at <= LATEST: cannot overflow
        days = MAX_SCHEDULE_AHEAD.days
        if self.send_at is not None and self.send_at > horizon:
            problem("send_at", "too_far_ahead", f"send_at must be at most {days} days after created_at")
        if self.expires_at is not None:
            if self.expires_at <= self.created_at:
                problem("expires_at", "expired", "expires_at must be in the future (after created_at)")
            elif self.expires_at > horizon:
                problem(
                    "expires_at", "too_far_ahead", f"expires_at must be at most {days} days after created_at"
                )
            if self.send_at is not None and self.expires_at <= self.send_at:
                problem("expires_at", "expires_before_send", "expires_at must be after send_at")

        record = self.to_avro()
        params, metadata = _budget_bytes(record.pop("params")), _budget_bytes(record.pop("metadata"))
        if params + metadata > MAX_PAYLOAD_BYTES:
            problem(
                "params" if params >= metadata else "metadata",
                "payload_too_large",
                f"params and metadata together take {params + metadata} bytes, "
                f"more than the {MAX_PAYLOAD_BYTES} allowed",
            )
        elif (total := params + metadata + _budget_bytes(record)) > MAX_REQUEST_BYTES:
            problem(
                None, "request_too_large", f"takes {total} bytes, more than the {MAX_REQUEST_BYTES} allowed"
            )

        if problems:
            # A ValidationError raised here is merged into the model's: every field is named at once.
            raise ValidationError.from_exception_data(type(self).__name__, problems, hide_input=True)
        return self

    @classmethod
    def parse(
        cls, data: NotificationRequest | Mapping[str, Any], *, index: int | None = None
    ) -> NotificationRequest:
        """Validate ``data``; raise ``InvalidRequestError`` naming every bad field, and nothing else."""
        if isinstance(data, NotificationRequest):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequestError(_problems(exc), index=index, locations=_locations(exc)) from exc
        except Exception as exc:
            # Odd input can still trip a foreign error (a str subclass, a Mapping that raises);
            # the router only survives a poison record if it gets the one documented error type.
            problem = f"could not be validated ({type(exc).__name__})"
            raise InvalidRequestError([("request", problem)], index=index) from exc

    def to_avro(self) -> dict[str, Any]:
        return {
            "notification_id": str(self.notification_id),
            "service": self.service,
            "idempotency_key": self.idempotency_key,
            "user_id": self.user_id,
            "template_id": self.template_id,
            "category": self.category,
            "priority": self.priority.upper(),
            "channels": [c.upper() for c in self.channels],
            "params": dict(self.params),
            "metadata": dict(self.metadata),
            "locale": self.locale,
            "send_at": self.send_at,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
        }

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> NotificationRequest:
        """The model for a decoded record (the reverse of ``to_avro``); raises only InvalidRequestError."""
        if not isinstance(record, Mapping):
            raise InvalidRequestError([("request", f"must be a record, not {type(record).__name__}")])
        try:
            data = dict(record)
        except Exception as exc:  # a Mapping that fails when read: still only the documented error
            raise InvalidRequestError([("request", f"could not be read ({type(exc).__name__})")]) from exc
        # Avro enum symbols are upper case; anything that is not a symbol is left for the model to refuse.
        priority = data.get("priority")
        if type(priority) is str:  # exactly str: a subclass could override lower()
            data["priority"] = priority.lower()
        channels = data.get("channels")
        if isinstance(channels, list | tuple):
            data["channels"] = [c.lower() if type(c) is str else c for c in channels]
        return cls.parse(data)


# --- error reporting ------------------------------------------------------------------------------

_SHOWN_KEY_CHARS = 16
_SHOWN_MESSAGE_CHARS = 200


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    problems = [(_path(err["loc"]), _message(err["msg"])) for err in errors[:MAX_PROBLEMS]]
    if len(errors) > MAX_PROBLEMS:
        problems.append(("request", f"{len(errors) - MAX_PROBLEMS} more problems not listed"))
    return problems


def _locations(exc: ValidationError) -> list[tuple[int | str, ...]]:
    """The path parts of each of ``_problems``' entries (the summary line, if any, is the request)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    locations = [_loc(err["loc"]) for err in errors[:MAX_PROBLEMS]]
    if len(errors) > MAX_PROBLEMS:
        locations.append(())
    return locations


def _loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # Drop the union tag: the path names the param, not the branch it was checked as.
    if len(loc) == 3 and loc[0] == "params" and loc[2] in _PARAM_TAGS:
        return loc[:2]
    return loc


def _path(loc: tuple[int | str, ...]) -> str:
    loc = _loc(loc)
    return ".".join(_path_part(part) for part in loc) or "request"


def _path_part(part: int | str) -> str:
    """A path component; a map key or unknown field name is user input, so a bad one is described."""
    if isinstance(part, int) or (0 < len(part) <= MAX_PARAM_KEY and part.isprintable()):
        return str(part)
    shown = ascii(part[:_SHOWN_KEY_CHARS])  # escapes every control character
    hidden = len(part) - _SHOWN_KEY_CHARS
    return f"{shown}...(+{hidden} characters)" if hidden > 0 else shown


def _message(message: str) -> str:
    # pydantic's own messages can quote a character of the input (a bad UUID): never a raw one.
    short = message[:_SHOWN_MESSAGE_CHARS]
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in short)

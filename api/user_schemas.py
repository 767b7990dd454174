"""Request bodies of the user, contact and preference endpoints (pydantic, strict, no extras).

The checks that need a library (E.164 with ``phonenumbers``, e-mail with ``email-validator``, IANA
time zones) are the repository's own; these models bound sizes and shapes first.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from notify_core.request_model import LOCALE_PATTERN, first_forbidden_char

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)
Token = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Category = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
ChannelName = Literal["ios", "android", "sms", "email"]
_USER_ID = re.compile(r"^[^\x00-\x20\x7f/]{1,128}$")
MAX_DEVICE_ID = 2**63 - 1  # bigserial


def is_user_id(text: str) -> bool:
    """A user id a notification can name: the path segment's shape and the request model's
    identifier rule (no invisible, private-use or other forbidden character), so a user made here
    can always be notified."""
    return bool(_USER_ID.match(text)) and first_forbidden_char(text) is None


class UserBody(BaseModel):
    """A field omitted (or null) keeps the user's current value; a new user's is en / UTC."""

    model_config = _STRICT
    locale: Annotated[str, StringConstraints(max_length=35, pattern=LOCALE_PATTERN)] | None = None
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class DeviceBody(BaseModel):
    model_config = _STRICT
    platform: Literal["ios", "android"]
    token: Token
    app: Name
    # The user's device whose token this one rotates: deactivated ("replaced") with the registration.
    replaces_device_id: Annotated[int, Field(ge=1, le=MAX_DEVICE_ID)] | None = None


class EmailBody(BaseModel):
    model_config = _STRICT
    address: Annotated[str, StringConstraints(min_length=3, max_length=320)]


class PhoneBody(BaseModel):
    model_config = _STRICT
    number: Annotated[str, StringConstraints(min_length=2, max_length=32)]


class Choice(BaseModel):
    model_config = _STRICT
    category: Category
    channel: ChannelName
    opted_in: StrictBool


class QuietHoursBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    start: time  # "22:00"
    end: time

    @model_validator(mode="after")
    def _start_is_not_end(self) -> QuietHoursBody:
        if self.start == self.end:
            raise ValueError("quiet hours must not start and end at the same time")
        return self


class PreferencesPatch(BaseModel):
    """Only what is given changes, all of it or nothing; ``quiet_hours: null`` clears them, and
    ``unsubscribed_channels`` is the full new set of channel-wide unsubscribes (``[]`` clears it)."""

    model_config = _STRICT
    choices: Annotated[list[Choice], Field(max_length=200)] = []
    quiet_hours: QuietHoursBody | None = None
    unsubscribed_channels: Annotated[list[ChannelName], Field(max_length=4)] | None = None

    @field_validator("unsubscribed_channels")
    @classmethod
    def _channels_unique(cls, value: list[ChannelName] | None) -> list[ChannelName] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("unsubscribed_channels must not repeat")
        return value

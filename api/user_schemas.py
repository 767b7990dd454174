"""Request bodies of the user, contact and preference endpoints (pydantic, strict, no extras).

The checks that need a library (E.164 with ``phonenumbers``, e-mail with ``email-validator``, IANA
time zones) are the repository's own; these models bound sizes and shapes first.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from notify_core.request_model import LOCALE_PATTERN, first_forbidden_char

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)
Token = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Category = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
ChannelName = Literal["ios", "android", "sms", "email"]
_USER_ID = re.compile(r"^[^\x00-\x20\x7f/]{1,128}$")


def is_user_id(text: str) -> bool:
    """A user id a notification can name: the path segment's shape and the request model's
    identifier rule (no invisible, private-use or other forbidden character), so a user made here
    can always be notified."""
    return bool(_USER_ID.match(text)) and first_forbidden_char(text) is None


class UserBody(BaseModel):
    model_config = _STRICT
    locale: Annotated[str, StringConstraints(max_length=35, pattern=LOCALE_PATTERN)] = "en"
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"


class DeviceBody(BaseModel):
    model_config = _STRICT
    platform: Literal["ios", "android"]
    token: Token
    app: Name


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


class PreferencesPatch(BaseModel):
    """Only what is given changes; ``quiet_hours: null`` clears them."""

    model_config = _STRICT
    choices: Annotated[list[Choice], Field(max_length=200)] = []
    quiet_hours: QuietHoursBody | None = None

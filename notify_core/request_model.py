"""The notification request: one validated pydantic model, shared by the SDK and the router.

It mirrors ``schemas/notification_request.v1.avsc``; ``to_avro`` gives the record the codec writes.
Every field that the SDK can fill (id, timestamps) is filled here, so one object is what is sent.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from notify_core.exceptions import InvalidRequestError
from notify_core.topics import Channel

AVRO_LONG_MIN, AVRO_LONG_MAX = -(2**63), 2**63 - 1
MAX_PARAMS = 100
MAX_PARAM_STRING = 10_000
# BCP 47-ish: a language, then optional subtags ("en", "fr-CA", "zh-Hant-TW").
LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

Priority = Literal["low", "normal", "high", "critical"]
ParamValue = StrictBool | StrictInt | StrictFloat | StrictStr | None
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


def _now() -> datetime:
    # Avro timestamp-millis keeps milliseconds; truncating here makes what we send equal what is read.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class NotificationRequest(BaseModel):
    """Notify ``user_id`` with ``template_id`` rendered from ``params``."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    user_id: Annotated[str, Field(min_length=1, max_length=128)]
    template_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
    service: Name
    category: Name
    priority: Priority = "normal"
    channels: list[Channel] = Field(default_factory=list, max_length=len(Channel))
    params: dict[Annotated[str, Field(min_length=1, max_length=128)], ParamValue] = Field(
        default_factory=dict, max_length=MAX_PARAMS
    )
    metadata: dict[
        Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=1024)]
    ] = Field(default_factory=dict, max_length=50)
    locale: Annotated[str, Field(pattern=LOCALE_PATTERN)] | None = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    send_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    notification_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    created_at: AwareDatetime = Field(default_factory=_now)

    @field_validator("channels")
    @classmethod
    def _channels_unique(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("channels must not repeat")
        return value

    @field_validator("params")
    @classmethod
    def _params_fit_avro(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if (
                isinstance(item, int)
                and not isinstance(item, bool)
                and not AVRO_LONG_MIN <= item <= AVRO_LONG_MAX
            ):
                raise ValueError(f"param {key!r} is outside the 64-bit integer range")
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"param {key!r} must be a finite number")
            if isinstance(item, str) and len(item) > MAX_PARAM_STRING:
                raise ValueError(f"param {key!r} is longer than {MAX_PARAM_STRING} characters")
        return value

    @model_validator(mode="after")
    def _times_make_sense(self) -> NotificationRequest:
        if self.expires_at is not None:
            if self.expires_at <= self.created_at:
                raise ValueError("expires_at must be in the future")
            if self.send_at is not None and self.expires_at <= self.send_at:
                raise ValueError("expires_at must be after send_at")
        return self

    @classmethod
    def parse(
        cls, data: NotificationRequest | Mapping[str, Any], *, index: int | None = None
    ) -> NotificationRequest:
        """Validate ``data``; raise ``InvalidRequestError`` naming every bad field."""
        if isinstance(data, NotificationRequest):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = [
                (".".join(str(p) for p in err["loc"]) or "request", err["msg"]) for err in exc.errors()
            ]
            raise InvalidRequestError(problems, index=index) from exc

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
        """The model for a decoded record (the reverse of ``to_avro``)."""
        data = dict(record)
        data["priority"] = str(data.get("priority", "")).lower()
        data["channels"] = [str(c).lower() for c in data.get("channels", [])]
        return cls.parse(data)

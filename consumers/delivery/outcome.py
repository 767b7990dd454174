"""The result of one provider call, as every adapter reports it.

Adapters know only their wire protocol; they turn a response (or a transport failure) into an
``Outcome`` through a pure ``classify`` function of their own. The worker framework decides what to
do next from the ``Outcome`` alone: mark sent, schedule a retry, or end the delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # transient: try again later (honour retry_after_s when set)
    PERMANENT = "permanent"  # never retry this delivery


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: str  # the provider's own code: "BadDeviceToken", "UNREGISTERED", "Throttling", "550", "timeout"
    provider_message_id: str | None = None
    retry_after_s: float | None = None
    deactivate_target: bool = False  # the token/number/address is dead: stop using it
    detail: str | None = None  # human-readable text from the provider, never personal data

    @classmethod
    def sent(cls, provider_message_id: str | None, reason: str = "ok") -> Outcome:
        return cls(Status.SENT, reason, provider_message_id=provider_message_id)

    @classmethod
    def retry(cls, reason: str, *, retry_after_s: float | None = None, detail: str | None = None) -> Outcome:
        return cls(Status.RETRY, reason, retry_after_s=retry_after_s, detail=detail)

    @classmethod
    def permanent(cls, reason: str, *, deactivate_target: bool = False, detail: str | None = None) -> Outcome:
        return cls(Status.PERMANENT, reason, deactivate_target=deactivate_target, detail=detail)

"""Plain, immutable values for user data, as the router's pure logic sees them.

The repository builds them from PostgreSQL rows; routing and rendering take them as arguments and
never touch the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from typing import Any

from notify_core.topics import Channel


@dataclass(frozen=True)
class Device:
    device_id: int
    platform: Channel  # Channel.IOS or Channel.ANDROID
    token: str
    app: str
    active: bool = True


@dataclass(frozen=True)
class Contact:
    """An e-mail address or an E.164 phone number."""

    contact_id: int
    channel: Channel  # Channel.EMAIL or Channel.SMS
    address: str
    active: bool = True


@dataclass(frozen=True)
class QuietHours:
    """Local wall-clock window; ``start > end`` wraps midnight (22:00-07:00)."""

    start: time
    end: time


@dataclass(frozen=True)
class Preferences:
    # (category, channel) -> opted in?  Absent means the category's default (opted in).
    choices: dict[tuple[str, Channel], bool] = field(default_factory=dict)
    unsubscribed: frozenset[Channel] = frozenset()  # global per-channel unsubscribe
    quiet_hours: QuietHours | None = None


@dataclass(frozen=True)
class User:
    user_id: str
    locale: str = "en"
    time_zone: str = "UTC"


@dataclass(frozen=True)
class UserContext:
    """Everything the router needs about one user."""

    user: User
    devices: tuple[Device, ...] = ()
    contacts: tuple[Contact, ...] = ()
    preferences: Preferences = field(default_factory=Preferences)


@dataclass(frozen=True)
class Category:
    name: str
    mandatory: bool = False  # e.g. security alerts: opt-outs do not apply
    # channel -> max deliveries per user per rolling 24 h; absent = uncapped
    daily_caps: dict[Channel, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Template:
    """One version of one template for one channel and locale."""

    template_id: str
    channel: Channel
    locale: str
    version: int
    title: str | None = None  # push
    body: str | None = None  # push
    data: dict[str, Any] = field(default_factory=dict)  # push custom data; values are templates too
    sms_text: str | None = None
    email_subject: str | None = None
    email_html: str | None = None
    email_text: str | None = None

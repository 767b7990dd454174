"""Sample channel messages, shaped as the router produces them: for tests, benchmarks and the demo."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from notify_core.topics import Channel


def channel_message(channel: Channel, target: str, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "delivery_id": str(uuid.uuid4()),
        "notification_id": str(uuid.uuid4()),
        "service": "tests",
        "user_id": "u-1",
        "channel": channel.value.upper(),
        "category": "account",
        "priority": "NORMAL",
        "target": target,
        "target_ref": "device:1" if channel in (Channel.IOS, Channel.ANDROID) else "contact:1",
        "locale": "en",
        "template_id": "welcome",
        "template_version": 1,
        "title": "Hello",
        "body": "Hello there",
        "data": {"k": "v"},
        "sms_text": "Hello there",
        "email_subject": "Hello",
        "email_html": "<p>Hello there</p>",
        "email_text": "Hello there",
        "attempt": 0,
        "not_before": None,
        "expires_at": now + timedelta(hours=1),
        "created_at": now,
    }
    return base | overrides

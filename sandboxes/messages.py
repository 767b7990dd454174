"""Sample channel messages shaped as the router produces them, and publishing them (tests, benchmarks)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from notify_core.codec import CHANNEL_MESSAGE, default_codec
from notify_core.exceptions import KafkaError
from notify_core.kafka_clients import make_producer
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names


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
        "requested_at": now,
    }
    return base | overrides


def publish(settings: Settings, channel: Channel, messages: Iterable[dict[str, Any]]) -> int:
    """Produce channel messages to the channel's topic, keyed by user, as the router does; waits for
    every acknowledgement and returns the count."""
    codec = default_codec()
    topic = topic_names(settings).channel(channel)
    producer = make_producer(settings)
    count = 0
    for message in messages:
        value = codec.encode(CHANNEL_MESSAGE, message)
        while True:
            try:
                producer.produce(topic, key=message["user_id"].encode(), value=value)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.05)
        count += 1
    if producer.flush(60) != 0:
        raise KafkaError(f"channel messages for {topic} were not all acknowledged within 60 s")
    return count

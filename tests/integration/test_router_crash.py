"""Exactly once inside Kafka: the router is SIGKILLed mid-stream and restarted; nothing is lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import confluent_kafka
import pytest

from notify_core.codec import CHANNEL_MESSAGE, default_codec
from notify_core.db.connect import connect, make_pool, schema_url
from notify_core.db.migrate import migrate
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient

pytestmark = pytest.mark.integration

REQUESTS = 10_000
USERS = 200


def router_process(settings: Settings, schema: str, *, burst: bool, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFY_ROUTER_GROUP": settings.router_group,
        "NOTIFY_ROUTER_BATCH_SIZE": "200",
        "NOTIFY_DATABASE_URL": schema_url(settings, schema),
    }
    args = [sys.executable, "-m", "notify_cli", "router", "run", *(["--burst"] if burst else [])]
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def committed_requests(settings: Settings) -> int:
    # read_uncommitted: a stable-offset fetch (the read_committed default) waits for the transaction
    # the killed router left open, up to transaction.timeout.ms; we want the last committed offsets now.
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": settings.router_group,
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        topic = topic_names(settings).requests
        parts = [confluent_kafka.TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def test_router_killed_mid_stream_delivers_every_message_exactly_once(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path
) -> None:
    schema = db_schema[1]
    settings = settings.model_copy(update={"router_group": f"router-{uuid.uuid4().hex[:8]}"})
    with connect(settings, schema=schema) as conn:
        migrate(conn)
    pool = make_pool(settings, schema=schema, min_size=1, max_size=1)
    repo = UserDataRepository(pool)
    for channel in (Channel.IOS, Channel.EMAIL):
        repo.put_template(
            Template(
                "ping",
                channel,
                "en",
                1,
                title="T",
                body="n={{ n }}",
                email_subject="n={{ n }}",
                email_text="n={{ n }}",
            )
        )
    for u in range(USERS):
        repo.upsert_user(f"user-{u}", "en", "UTC")
        repo.add_device(f"user-{u}", "ios", f"token-{u}", "app")
        repo.add_email(f"user-{u}", f"user-{u}@example.com")
    pool.close()

    with NotificationClient(settings) as client:
        sent = client.send_batch(
            [
                {
                    "user_id": f"user-{i % USERS}",
                    "template_id": "ping",
                    "service": "load",
                    "category": "account",
                    "channels": ["ios", "email"],
                    "params": {"n": i},
                }
                for i in range(REQUESTS)
            ]
        )
    expected_ids = {r.notification_id for r in sent}

    first = router_process(settings, schema, burst=False, log=tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 120
        while committed_requests(settings) < REQUESTS // 4:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "router made no progress"
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert committed_requests(settings) < REQUESTS, "killed too late to prove anything"

    second = router_process(settings, schema, burst=True, log=tmp_path / "second.log")
    assert second.wait(300) == 0, (tmp_path / "second.log").read_text()[-2000:]

    codec = default_codec()
    delivered: Counter[str] = Counter()
    notifications: set[str] = set()
    for channel in (Channel.IOS, Channel.EMAIL):
        records = read_records(
            settings,
            topic_names(settings).channel(channel),
            max_records=3 * REQUESTS,
            timeout_s=120,
            idle_s=3,
        )
        for record in records:
            message = codec.decode(record.value or b"", CHANNEL_MESSAGE)
            delivered[message["delivery_id"]] += 1
            notifications.add(message["notification_id"])
    assert notifications == expected_ids
    assert len(delivered) == 2 * REQUESTS
    assert [d for d, n in delivered.items() if n > 1] == []

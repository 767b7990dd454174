"""The SDK against the real broker: what it sends is on the topic, decodes to what was sent, keyed by user."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from notify_core.codec import CONTENT_TYPE, REQUEST, default_codec
from notify_core.exceptions import DeliveryError
from notify_core.records import Record, read_records
from notify_core.settings import Settings
from notify_core.topics import topic_names
from producer import InvalidRequestError, NotificationClient, NotificationRequest

pytestmark = pytest.mark.integration


def request(i: int = 0, **overrides: Any) -> dict[str, Any]:
    return {
        "user_id": f"user-{i}",
        "template_id": "welcome",
        "service": "signup",
        "category": "account",
        "channels": ["ios", "email"],
        "params": {"name": f"Ada {i}", "count": i, "vip": i % 2 == 0, "score": 1.25, "nothing": None},
        **overrides,
    }


def read_requests(settings: Settings, count: int) -> list[Record]:
    return read_records(settings, topic_names(settings).requests, max_records=count, timeout_s=30)


def test_sent_request_is_on_the_topic_and_decodes_to_what_was_sent(settings: Settings) -> None:
    sent = NotificationRequest.parse(request(7, idempotency_key="k-7", metadata={"campaign": "c1"}))
    with NotificationClient(settings) as client:
        result = client.send(sent)
    assert result.topic == topic_names(settings).requests
    assert result.notification_id == str(sent.notification_id)

    [record] = read_requests(settings, 1)
    assert (record.partition, record.offset) == (result.partition, result.offset)
    assert record.key == b"user-7"
    assert record.header("content-type") == CONTENT_TYPE.encode()
    decoded = default_codec().decode(record.value or b"", REQUEST)
    assert NotificationRequest.from_avro(decoded) == sent


def test_one_users_requests_share_a_partition_in_order(settings: Settings) -> None:
    with NotificationClient(settings) as client:
        results = client.send_batch([request(1, params={"seq": n}) for n in range(20)])
    assert len({r.partition for r in results}) == 1
    offsets = [r.offset for r in results]
    assert offsets == sorted(offsets)


def test_batch_and_async_apis_deliver_everything(settings: Settings) -> None:
    async def send_async(client: NotificationClient) -> list[str]:
        results = await asyncio.gather(*(client.send_async(request(i)) for i in range(50)))
        batch = await client.send_batch_async([request(i) for i in range(50, 300)])
        return [r.notification_id for r in [*results, *batch]]

    with NotificationClient(settings) as client:
        ids = asyncio.run(send_async(client))
    records = read_requests(settings, 300)
    codec = default_codec()
    assert sorted(codec.decode(r.value or b"", REQUEST)["notification_id"] for r in records) == sorted(ids)


def test_bad_request_is_refused_naming_the_field_and_nothing_is_sent(settings: Settings) -> None:
    with NotificationClient(settings) as client:
        with pytest.raises(InvalidRequestError, match="user_id") as caught:
            client.send(request(user_id=""))
        assert [p for p, _ in caught.value.problems] == ["user_id"]
        with pytest.raises(InvalidRequestError, match="#2"):
            client.send_batch([request(0), request(1), request(channels=["fax"])])
    assert read_records(settings, topic_names(settings).requests, max_records=1, timeout_s=5, idle_s=1) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_broker_gives_a_clear_error_within_the_timeout(settings: Settings) -> None:
    nowhere = settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{_closed_port()}", "produce_timeout_s": 2.0}
    )
    started = time.monotonic()
    with NotificationClient(nowhere) as client, pytest.raises(DeliveryError, match="reachable") as caught:
        client.send(request())
    # Bounded: the configured 2 s plus librdkafka's scheduling, never an indefinite hang.
    assert time.monotonic() - started < 10
    assert caught.value.code == "_MSG_TIMED_OUT"


def test_missing_topic_error_says_how_to_fix_it(settings: Settings) -> None:
    orphan = settings.model_copy(update={"topic_prefix": "never-created", "produce_timeout_s": 2.0})
    with (
        NotificationClient(orphan) as client,
        pytest.raises(DeliveryError, match=r"notify topics apply|reachable"),
    ):
        client.send(request())

"""Hostile channel records, produced straight onto the topics: dead-lettered, and the worker keeps on.

Each class that used to stop a worker or make it misbehave: a NUL in an identifier PostgreSQL
refuses, a ~1 MB record, a malformed ``target_ref``, another channel's record, bytes that are no
record at all; far-future and long retries that blocked a retry partition; headers dropped by
retry copies. After each, valid messages produced behind it are delivered, once, also after a
restart.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from consumers.delivery.fcm import AccessToken, FcmAdapter
from notify_core.codec import CHANNEL_MESSAGE, default_codec
from notify_core.kafka_clients import make_producer
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from sandboxes.fcm import FcmSandbox, FcmSandboxThread
from tests.delivery_harness import DeliveryEnv, channel_message, delivery_env

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
Headers = list[tuple[str, str | bytes | None]]
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FcmSandboxThread, Path]]:
    # UNAVAILABLE answers with a 300 s Retry-After; INTERNAL with none (a short, jittered retry).
    with FcmSandbox.run_in_thread(retry_after_s={"UNAVAILABLE": 300}) as box:
        yield box, box.create_service_account(tmp_path_factory.mktemp("fcm")).path


@pytest.fixture
def sandbox(fcm: tuple[FcmSandboxThread, Path]) -> FcmSandboxThread:
    return fcm[0]


@pytest_asyncio.fixture
async def env(settings: Settings, db_schema: tuple[Settings, str]) -> AsyncIterator[DeliveryEnv]:
    async with delivery_env(settings, db_schema[1], Channel.ANDROID) as made:
        yield made


@pytest.fixture
def make_adapter(fcm: tuple[FcmSandboxThread, Path]) -> Callable[[], FcmAdapter]:
    box, credentials = fcm
    return lambda: FcmAdapter(
        endpoint=box.endpoint, project_id="notify-sandbox", token=AccessToken.from_file(credentials)
    )


def raw(settings: Settings, topic: str, items: list[tuple[bytes, Headers]]) -> None:
    """Produce values as they are (no model, no codec checks), all on one key so one partition."""
    producer = make_producer(settings)
    for value, headers in items:
        producer.produce(topic, key=b"u-hostile", value=value, headers=headers)
    assert producer.flush(30) == 0


def encoded(message: dict[str, Any]) -> bytes:
    return default_codec().encode(CHANNEL_MESSAGE, message)


def android(**overrides: Any) -> dict[str, Any]:
    message = channel_message(Channel.ANDROID, f"fcm-{uuid.uuid4().hex}", user_id="u-hostile")
    return {**message, **overrides}


def delivered(sandbox: FcmSandboxThread, messages: list[dict[str, Any]]) -> Counter[str]:
    targets = {m["target"] for m in messages}
    return Counter(r.target for r in sandbox.recorder.delivered() if r.target in targets)


async def test_hostile_channel_records_are_dead_lettered_and_valid_ones_behind_them_delivered(
    env: DeliveryEnv, sandbox: FcmSandboxThread, make_adapter: Callable[[], FcmAdapter]
) -> None:
    """Every class gets its own reason; valid messages after each are sent once, then none again."""
    valid = [android() for _ in range(6)]
    hostile: list[tuple[bytes, str]] = [
        (encoded(android(delivery_id="0000\x00-nul")), "invalid_message"),
        (encoded(android(body="x" * 900_000)), "payload_too_large"),
        (encoded(android(target_ref="device:abc")), "invalid_message"),
        (encoded(android(target_ref="contact:7")), "invalid_message"),
        (encoded(android(channel="IOS")), "wrong_channel"),
        (b"\xc3\x01 not an avro record at all", "decode_error"),
    ]
    items: list[tuple[bytes, Headers]] = []
    for (value, _), good in zip(hostile, valid, strict=True):
        items += [(value, []), (encoded(good), [])]
    raw(env.settings, topic_names(env.settings).channel(Channel.ANDROID), items)

    stats = await env.run(make_adapter())
    assert stats.sent == len(valid)
    assert delivered(sandbox, valid) == Counter(m["target"] for m in valid)
    letters = env.dead_letters()
    assert sorted(letter["error_type"] for letter in letters) == sorted(reason for _, reason in hostile)
    big = next(letter for letter in letters if letter["error_type"] == "payload_too_large")
    assert big["payload_truncated"]
    assert big["payload_size"] > 900_000
    assert len(big["payload"]) < 300_000

    later = [android() for _ in range(3)]
    env.publish(later)
    again = await env.run(make_adapter())  # a restart: the old records are not touched again
    assert (again.sent, again.dead_lettered) == (3, 0)
    assert delivered(sandbox, valid + later) == Counter(m["target"] for m in valid + later)


async def test_a_short_retry_is_not_held_behind_a_long_one_on_the_same_partition(
    env: DeliveryEnv, sandbox: FcmSandboxThread, make_adapter: Callable[[], FcmAdapter]
) -> None:
    """A 300 s Retry-After parks its delivery in the 300 s tier; a 1 s retry after it, same user and
    partition, is sent within seconds, and burst mode still ends (the long wait counts as idle)."""
    # Retry-After is honoured up to the policy maximum: here the production default, 300 s.
    env = DeliveryEnv(
        env.settings.model_copy(update={"delivery_backoff_max_s": 300.0}), env.schema, env.channel, env.pool
    )
    long_wait = android()
    sandbox.faults.add("UNAVAILABLE", target=long_wait["target"], times=1)
    env.publish([long_wait])
    first = await env.run(make_adapter())
    assert (first.sent, first.retried) == (0, 1)

    short_wait = android()
    sandbox.faults.add("INTERNAL", target=short_wait["target"], times=1)
    env.publish([short_wait])
    began = time.monotonic()
    second = await env.run(make_adapter())
    assert second.sent == 1, "the 1 s retry was held behind the 300 s one"
    assert delivered(sandbox, [short_wait, long_wait]) == Counter({short_wait["target"]: 1})
    assert time.monotonic() - began < 60  # a loose hang guard: the old code ran to max_runtime_s


async def test_a_far_future_retry_waits_one_tier_not_for_ever(
    env: DeliveryEnv, sandbox: FcmSandboxThread, make_adapter: Callable[[], FcmAdapter]
) -> None:
    """A crafted retry due in year 9000 ahead of a due one: both are sent within the 1 s tier."""
    names = topic_names(env.settings)
    crafted = android(attempt=1, not_before=datetime(9000, 1, 1, tzinfo=UTC))
    due = android(attempt=1, not_before=datetime.now(UTC) - timedelta(seconds=1))
    raw(env.settings, names.retry(Channel.ANDROID, 1), [(encoded(crafted), []), (encoded(due), [])])
    stats = await env.run(make_adapter())
    assert stats.sent == 2
    assert delivered(sandbox, [crafted, due]) == Counter({crafted["target"]: 1, due["target"]: 1})


async def test_retry_copies_and_events_keep_the_original_headers(
    env: DeliveryEnv, sandbox: FcmSandboxThread, make_adapter: Callable[[], FcmAdapter]
) -> None:
    """The trace of a failed delivery travels on with its retry copy and its events: their
    traceparent names the original's trace (its span is the attempt's, when tracing records one)."""
    flaky = android()
    sandbox.faults.add("INTERNAL", target=flaky["target"], times=1)
    names = topic_names(env.settings)
    raw(env.settings, names.channel(Channel.ANDROID), [(encoded(flaky), [("traceparent", TRACEPARENT)])])
    stats = await env.run(make_adapter())
    assert (stats.sent, stats.retried) == (1, 1)
    [copy] = read_records(env.settings, names.retry(Channel.ANDROID, 1), max_records=10, timeout_s=20)
    trace_of = TRACEPARENT.split(b"-")[1]
    assert (copy.header("traceparent") or b"").split(b"-")[1] == trace_of
    events = read_records(env.settings, names.events, max_records=10, timeout_s=20)
    assert {(e.header("traceparent") or b"").split(b"-")[1] for e in events} == {trace_of}

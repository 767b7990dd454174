"""The worker framework on the real stack with the APNs adapter and sandbox: sends, retries, DLQ."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from consumers.delivery.apns import ApnsAdapter
from consumers.delivery.dead_letters import Selection, read_letters, replay
from consumers.delivery.delivery_log import DeliveryLog
from notify_cli.worker_cmd import make_deactivate
from notify_core.db.connect import connect, make_pool
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.userdata.repository import UserDataRepository
from sandboxes.apns import ApnsSandbox
from sandboxes.tls import Es256Key, generate_es256_key
from tests.delivery_harness import DeliveryEnv, channel_message, delivery_env

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
KEY_ID, TEAM_ID = "KEYID12345", "TEAM123456"


def token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


@pytest.fixture(scope="module")
def key() -> Es256Key:
    return generate_es256_key()


@pytest_asyncio.fixture
async def sandbox(key: Es256Key, tmp_path: Path) -> AsyncIterator[ApnsSandbox]:
    box = ApnsSandbox(public_key_pem=key.public_pem, key_id=KEY_ID, team_id=TEAM_ID, cert_dir=tmp_path)
    await box.start()
    yield box
    await box.stop()


@pytest_asyncio.fixture
async def env(settings: Settings, db_schema: tuple[Settings, str]) -> AsyncIterator[DeliveryEnv]:
    async with delivery_env(settings, db_schema[1], Channel.IOS) as made:
        yield made


def adapter(sandbox: ApnsSandbox, key: Es256Key) -> ApnsAdapter:
    return ApnsAdapter(
        endpoint=sandbox.endpoint,
        key_pem=key.private_pem,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic="com.example.notify",
        ca_file=sandbox.ca_path,
        timeout_s=5,
    )


async def test_every_message_is_sent_once_and_a_redelivered_one_is_skipped(
    env: DeliveryEnv, sandbox: ApnsSandbox, key: Es256Key
) -> None:
    messages = [channel_message(Channel.IOS, token()) for _ in range(30)]
    env.publish(messages + messages[:5])  # five redelivered copies: same delivery ids
    stats = await env.run(adapter(sandbox, key))
    assert (stats.sent, stats.skipped_done) == (30, 5)
    assert Counter(r.target for r in sandbox.recorder.all()) == Counter(m["target"] for m in messages)
    rows = await env.log_rows()
    assert {rows[m["delivery_id"]][0] for m in messages} == {"sent"}
    sent_events = [e for e in env.events() if e["event_type"] == "SENT"]
    assert sorted(e["delivery_id"] for e in sent_events) == sorted(m["delivery_id"] for m in messages)
    assert all(e["provider"] == "sandbox" and e["attempt"] == 1 and e["latency_ms"] > 0 for e in sent_events)


async def test_a_dead_token_is_dead_lettered_and_deactivated(
    env: DeliveryEnv, sandbox: ApnsSandbox, key: Es256Key
) -> None:
    dead = channel_message(Channel.IOS, token(), target_ref="device:42")
    sandbox.faults.add("Unregistered", target=dead["target"])
    deactivated: list[tuple[Channel, str, str]] = []

    async def deactivate(channel: Channel, ref: str, reason: str) -> None:
        deactivated.append((channel, ref, reason))

    env.publish([dead])
    stats = await env.run(adapter(sandbox, key), deactivate=deactivate)
    assert (stats.sent, stats.dead_lettered, stats.deactivated) == (0, 1, 1)
    assert deactivated == [(Channel.IOS, "device:42", "Unregistered")]
    [letter] = env.dead_letters()
    assert (letter["error_type"], letter["attempts"], letter["stage"]) == ("Unregistered", 1, "worker.ios")
    kinds = [e["event_type"] for e in env.events()]
    assert Counter(kinds) == Counter({"FAILED_PERMANENT": 1, "DEAD_LETTERED": 1, "TARGET_DEACTIVATED": 1})


async def test_a_retryable_error_is_retried_through_the_retry_topic_until_it_heals(
    env: DeliveryEnv, sandbox: ApnsSandbox, key: Es256Key
) -> None:
    flaky = channel_message(Channel.IOS, token())
    fine = channel_message(Channel.IOS, token())
    sandbox.faults.add("TooManyRequests", target=flaky["target"], times=2)
    env.publish([flaky, fine])
    stats = await env.run(adapter(sandbox, key))
    assert (stats.sent, stats.retried, stats.dead_lettered) == (2, 2, 0)
    answers = [r.answered for r in sandbox.recorder.all() if r.target == flaky["target"]]
    assert answers == ["TooManyRequests", "TooManyRequests", "ok"]
    status, attempts, _ = (await env.log_rows())[flaky["delivery_id"]]
    assert (status, attempts) == ("sent", 3)


async def test_exhausted_retries_end_in_the_dead_letter_topic(
    env: DeliveryEnv, sandbox: ApnsSandbox, key: Es256Key
) -> None:
    down = channel_message(Channel.IOS, token())
    sandbox.faults.add("ServiceUnavailable", target=down["target"])
    env.publish([down])
    stats = await env.run(adapter(sandbox, key))
    assert (stats.retried, stats.dead_lettered) == (2, 1)
    [letter] = env.dead_letters()
    assert (letter["error_type"], letter["attempts"]) == ("attempts_exhausted", 3)
    assert "ServiceUnavailable" in letter["error_message"]
    assert (await env.log_rows())[down["delivery_id"]][0] == "dead_lettered"


async def test_an_expired_message_is_dead_lettered_without_a_call(
    env: DeliveryEnv, sandbox: ApnsSandbox, key: Es256Key
) -> None:
    env.publish([channel_message(Channel.IOS, token(), expires_at=datetime.now(UTC) - timedelta(seconds=1))])
    stats = await env.run(adapter(sandbox, key))
    assert stats.dead_lettered == 1
    assert sandbox.recorder.all() == []
    assert env.dead_letters()[0]["error_type"] == "expired"


async def test_dead_letters_replayed_after_the_provider_heals_are_delivered_once(
    env: DeliveryEnv, sandbox: ApnsSandbox, key: Es256Key
) -> None:
    down = [channel_message(Channel.IOS, token()) for _ in range(3)]
    for message in down:
        sandbox.faults.add("InternalServerError", target=message["target"])
    env.publish(down)
    await env.run(adapter(sandbox, key))
    letters = read_letters(env.settings, "ios", Selection(reason="attempts_exhausted"))
    assert len(letters) == 3
    assert read_letters(env.settings, "ios", Selection(reason="BadDeviceToken")) == []

    sandbox.faults.clear()
    log = DeliveryLog(env.pool, owner="replay", lease=timedelta(seconds=30))
    assert await replay(env.settings, "ios", letters, log) == 3
    assert await replay(env.settings, "ios", letters[:1], log) == 1  # replayed twice: still one send
    stats = await env.run(adapter(sandbox, key))
    assert (stats.sent, stats.skipped_done) == (3, 1)
    delivered = [r.target for r in sandbox.recorder.delivered()]
    assert sorted(delivered) == sorted(m["target"] for m in down)
    rows = await env.log_rows()
    assert {rows[m["delivery_id"]][:2] for m in down} == {("sent", 1)}


async def test_a_dead_token_deactivates_the_users_device_row(
    env: DeliveryEnv, sandbox: ApnsSandbox, key: Es256Key
) -> None:
    pool = make_pool(env.settings, schema=env.schema, max_size=1)
    try:
        repo = UserDataRepository(pool)
        repo.upsert_user("u-dead")
        dead_token = token()
        device_id = repo.add_device("u-dead", "ios", dead_token, "app")
        sandbox.faults.add("BadDeviceToken", target=dead_token)
        env.publish(
            [channel_message(Channel.IOS, dead_token, user_id="u-dead", target_ref=f"device:{device_id}")]
        )
        stats = await env.run(adapter(sandbox, key), deactivate=make_deactivate(repo))
        assert stats.deactivated == 1
        context = repo.get_context("u-dead")
        assert context is not None
        assert context.devices == ()
        with connect(env.settings, schema=env.schema) as conn:
            row = conn.execute(
                "select active, deactivated_reason from devices where device_id = %s", (device_id,)
            )
            assert row.fetchone() == (False, "BadDeviceToken")
    finally:
        pool.close()

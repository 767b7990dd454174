"""The SMS worker on the real stack against the SNS sandbox (moto behind a fault-injecting layer)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from consumers.delivery.sms import SmsAdapter
from notify_core.settings import Settings
from notify_core.topics import Channel
from sandboxes.sns import SnsSandbox
from tests.delivery_harness import DeliveryEnv, channel_message, delivery_env, exhaust_then_replay

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def phone() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SnsSandbox]:
    box = SnsSandbox.run_in_thread(port=0)
    yield box
    box.stop()


@pytest_asyncio.fixture
async def env(settings: Settings, db_schema: tuple[Settings, str]) -> AsyncIterator[DeliveryEnv]:
    async with delivery_env(settings, db_schema[1], Channel.SMS) as made:
        yield made


def adapter(sandbox: SnsSandbox) -> SmsAdapter:
    return SmsAdapter(
        endpoint_url=sandbox.endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        sender_id="NOTIFY",
    )


async def test_sms_are_sent_once_with_their_attributes(env: DeliveryEnv, sandbox: SnsSandbox) -> None:
    messages = [channel_message(Channel.SMS, phone(), category="marketing") for _ in range(10)]
    env.publish(messages + messages[:2])
    stats = await env.run(adapter(sandbox))
    assert (stats.sent, stats.skipped_done) == (10, 2)
    mine = [r for r in sandbox.recorder.all() if r.target in {m["target"] for m in messages}]
    assert Counter(r.target for r in mine) == Counter(m["target"] for m in messages)
    assert {r.payload["attributes"]["AWS.SNS.SMS.SMSType"] for r in mine} == {"Promotional"}
    assert {r.payload["attributes"]["AWS.SNS.SMS.SenderID"] for r in mine} == {"NOTIFY"}


async def test_an_invalid_number_is_permanent_and_deactivated(env: DeliveryEnv, sandbox: SnsSandbox) -> None:
    bad = channel_message(Channel.SMS, phone(), target_ref="contact:7")
    sandbox.faults.add("InvalidParameter", target=bad["target"])
    seen: list[str] = []

    async def deactivate(_channel: Channel, ref: str, _reason: str) -> None:
        seen.append(ref)

    env.publish([bad])
    stats = await env.run(adapter(sandbox), deactivate=deactivate)
    assert (stats.dead_lettered, seen) == (1, ["contact:7"])
    assert env.dead_letters()[0]["error_type"] == "InvalidParameter"


async def test_throttling_is_retried_until_it_heals(env: DeliveryEnv, sandbox: SnsSandbox) -> None:
    flaky = channel_message(Channel.SMS, phone())
    sandbox.faults.add("Throttling", target=flaky["target"], times=2)
    env.publish([flaky])
    stats = await env.run(adapter(sandbox))
    assert (stats.sent, stats.retried) == (1, 2)
    assert [r.answered for r in sandbox.recorder.all() if r.target == flaky["target"]] == [
        "Throttling",
        "Throttling",
        "ok",
    ]
    assert (await env.log_rows())[flaky["delivery_id"]][:2] == ("sent", 3)


async def test_exhausted_deliveries_are_dead_lettered_and_replayed_once_healed(
    env: DeliveryEnv, sandbox: SnsSandbox
) -> None:
    await exhaust_then_replay(
        env, lambda: adapter(sandbox), sandbox.faults, [phone() for _ in range(3)], "ServiceUnavailable"
    )


async def test_the_worker_paces_sms_at_the_account_limit(
    settings: Settings, db_schema: tuple[Settings, str], sandbox: SnsSandbox
) -> None:
    paced = settings.model_copy(update={"sms_max_per_second": 10.0})
    messages = [channel_message(Channel.SMS, phone()) for _ in range(25)]
    async with delivery_env(paced, db_schema[1], Channel.SMS) as env:
        env.publish(messages)
        stats = await env.run(adapter(sandbox))
    assert stats.sent == 25
    targets = {m["target"] for m in messages}
    arrivals = sorted(r.at for r in sandbox.recorder.all() if r.target in targets)
    assert len(arrivals) == 25
    # A bucket of 10 at 10/s allows at most 10 + 10·T sends in any T seconds. Upper bounds on counts
    # hold however slow the machine is: slowness only spreads the sends further apart.
    first = arrivals[0]
    assert sum(1 for at in arrivals if at < first + 0.5) <= 16
    assert arrivals[-1] - first >= 1.3

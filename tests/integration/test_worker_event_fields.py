"""A channel worker's analytics events carry the template and locale of the message they are about.

The real SMS worker (``SmsAdapter``) against the SNS sandbox, on the real stack: one message sent at
once, one throttled then sent, one to an invalid number (permanent, dead-lettered, its contact
deactivated) and one already expired on arrival (dead-lettered before any call). Every event they
produce (SENT, FAILED_RETRYING, FAILED_PERMANENT, DEAD_LETTERED, TARGET_DEACTIVATED) names its
channel message's ``template_id`` and ``locale``; ``requested_at`` stays null (the channel message
has no request time: a reader takes it from the delivery's ROUTED event).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from consumers.delivery.sms import SmsAdapter
from notify_core.settings import Settings
from notify_core.topics import Channel
from sandboxes.sns import SnsSandbox
from tests.delivery_harness import DeliveryEnv, channel_message, delivery_env

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


async def test_every_worker_event_names_its_messages_template_and_locale(
    env: DeliveryEnv, sandbox: SnsSandbox
) -> None:
    """SENT, FAILED_RETRYING, FAILED_PERMANENT, DEAD_LETTERED and TARGET_DEACTIVATED each carry the
    template_id and locale of the channel message they are about, and a null requested_at."""
    sent = channel_message(Channel.SMS, phone(), template_id="welcome", locale="fr")
    flaky = channel_message(Channel.SMS, phone(), template_id="receipt", locale="pt-BR")
    bad = channel_message(Channel.SMS, phone(), template_id="reset", locale="de", target_ref="contact:9")
    late = channel_message(
        Channel.SMS,
        phone(),
        template_id="promo",
        locale="en-GB",
        expires_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    sandbox.faults.add("Throttling", target=flaky["target"], times=1)
    sandbox.faults.add("InvalidParameter", target=bad["target"])
    deactivated: list[str] = []

    async def deactivate(_channel: Channel, ref: str, _reason: str) -> None:
        deactivated.append(ref)

    env.publish([sent, flaky, bad, late])
    adapter = SmsAdapter(
        endpoint_url=sandbox.endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        sender_id="NOTIFY",
    )
    stats = await env.run(adapter, deactivate=deactivate)
    assert (stats.sent, stats.retried, stats.dead_lettered, deactivated) == (2, 1, 2, ["contact:9"])

    events = {e["event_id"]: e for e in env.events()}.values()  # each event once
    by_delivery = {m["delivery_id"]: m for m in (sent, flaky, bad, late)}
    assert Counter((by_delivery[e["delivery_id"]]["template_id"], e["event_type"]) for e in events) == {
        ("welcome", "SENT"): 1,
        ("receipt", "FAILED_RETRYING"): 1,
        ("receipt", "SENT"): 1,
        ("reset", "FAILED_PERMANENT"): 1,
        ("reset", "DEAD_LETTERED"): 1,
        ("reset", "TARGET_DEACTIVATED"): 1,
        ("promo", "DEAD_LETTERED"): 1,
    }
    for e in events:
        message = by_delivery[e["delivery_id"]]
        assert (e["template_id"], e["locale"], e["requested_at"]) == (
            message["template_id"],
            message["locale"],
            None,
        )
        assert (e["channel"], e["category"], e["service"]) == ("SMS", "account", "tests")

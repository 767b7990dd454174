"""The e-mail worker on the real stack against the SMTP sandbox (aiosmtpd, STARTTLS)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from consumers.delivery.email import EmailAdapter, message_id_for
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.tracking import Purpose, TrackedDelivery, TrackingSigner
from sandboxes.smtp import SmtpSandbox
from tests.delivery_harness import DeliveryEnv, channel_message, delivery_env, exhaust_then_replay

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
SIGNER = TrackingSigner(tracking_secrets=["test-tracking-secret"], unsubscribe_secrets=["test-unsubscribe"])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSandbox]:
    with SmtpSandbox.run_in_thread(cert_dir=tmp_path_factory.mktemp("tls"), require_starttls=True) as box:
        yield box


@pytest_asyncio.fixture
async def env(settings: Settings, db_schema: tuple[Settings, str]) -> AsyncIterator[DeliveryEnv]:
    async with delivery_env(settings, db_schema[1], Channel.EMAIL) as made:
        yield made


def adapter(sandbox: SmtpSandbox) -> EmailAdapter:
    return EmailAdapter(
        host="127.0.0.1",
        port=sandbox.port,
        sender="Notify <no-reply@example.com>",
        public_base_url="https://example.com",
        signer=SIGNER,
        start_tls=True,
        ca_file=sandbox.ca_path,
    )


def address() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.com"


async def test_mail_is_sent_once_with_both_parts_and_one_click_unsubscribe(
    env: DeliveryEnv, sandbox: SmtpSandbox
) -> None:
    messages = [channel_message(Channel.EMAIL, address(), category="marketing") for _ in range(8)]
    env.publish(messages + messages[:2])
    stats = await env.run(adapter(sandbox))
    assert (stats.sent, stats.skipped_done) == (8, 2)
    mine = [r for r in sandbox.recorder.all() if r.target in {m["target"] for m in messages}]
    assert Counter(r.target for r in mine) == Counter(m["target"] for m in messages)
    first = next(r for r in mine if r.target == messages[0]["target"])
    assert first.payload["message_id"] == message_id_for(messages[0]["delivery_id"], "example.com")
    assert first.payload["text"].strip() == "Hello there"
    assert "<p>Hello there</p>" in first.payload["html"]
    assert first.payload["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    base, _, token = first.payload["list_unsubscribe"].strip("<>").rpartition("/")
    assert base == "https://example.com/t/unsubscribe"
    assert SIGNER.verify(Purpose.UNSUBSCRIBE, token) == TrackedDelivery(
        delivery_id=messages[0]["delivery_id"],
        notification_id=messages[0]["notification_id"],
        user_id="u-1",
        service=messages[0]["service"],
        channel=Channel.EMAIL,
        category="marketing",
    )


async def test_an_unknown_mailbox_is_permanent_and_deactivated(
    env: DeliveryEnv, sandbox: SmtpSandbox
) -> None:
    bad = channel_message(Channel.EMAIL, address(), target_ref="contact:3")
    sandbox.faults.add("550", target=bad["target"])
    seen: list[str] = []

    async def deactivate(_channel: Channel, ref: str, _reason: str) -> None:
        seen.append(ref)

    env.publish([bad])
    stats = await env.run(adapter(sandbox), deactivate=deactivate)
    assert (stats.dead_lettered, seen) == (1, ["contact:3"])


async def test_a_greylisting_4xx_is_retried_until_accepted(env: DeliveryEnv, sandbox: SmtpSandbox) -> None:
    grey = channel_message(Channel.EMAIL, address())
    sandbox.faults.add("451", target=grey["target"], times=2)
    env.publish([grey])
    stats = await env.run(adapter(sandbox))
    assert (stats.sent, stats.retried) == (1, 2)
    assert (await env.log_rows())[grey["delivery_id"]][:2] == ("sent", 3)


async def test_exhausted_deliveries_are_dead_lettered_and_replayed_once_healed(
    env: DeliveryEnv, sandbox: SmtpSandbox
) -> None:
    await exhaust_then_replay(
        env, lambda: adapter(sandbox), sandbox.faults, [address() for _ in range(3)], "452"
    )

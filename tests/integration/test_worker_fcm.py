"""The Android worker on the real stack against the FCM sandbox (OAuth token endpoint + messages:send)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from consumers.delivery.fcm import AccessToken, FcmAdapter
from notify_core.settings import Settings
from notify_core.topics import Channel
from sandboxes.fcm import FcmSandbox, FcmSandboxThread
from tests.delivery_harness import DeliveryEnv, channel_message, delivery_env, exhaust_then_replay

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FcmSandboxThread, Path]]:
    with FcmSandbox.run_in_thread() as box:
        account = box.create_service_account(tmp_path_factory.mktemp("fcm"))
        yield box, account.path


@pytest_asyncio.fixture
async def env(settings: Settings, db_schema: tuple[Settings, str]) -> AsyncIterator[DeliveryEnv]:
    async with delivery_env(settings, db_schema[1], Channel.ANDROID) as made:
        yield made


def adapter(sandbox: tuple[FcmSandboxThread, Path]) -> FcmAdapter:
    box, credentials = sandbox
    return FcmAdapter(
        endpoint=box.endpoint, project_id="notify-sandbox", token=AccessToken.from_file(credentials)
    )


def token() -> str:
    return f"fcm-{uuid.uuid4().hex}"


async def test_pushes_are_sent_once(env: DeliveryEnv, sandbox: tuple[FcmSandboxThread, Path]) -> None:
    messages = [channel_message(Channel.ANDROID, token()) for _ in range(10)]
    env.publish(messages + messages[:3])
    stats = await env.run(adapter(sandbox))
    assert (stats.sent, stats.skipped_done) == (10, 3)
    mine = [r.target for r in sandbox[0].recorder.all() if r.target in {m["target"] for m in messages}]
    assert Counter(mine) == Counter(m["target"] for m in messages)


async def test_an_unregistered_token_is_deactivated(
    env: DeliveryEnv, sandbox: tuple[FcmSandboxThread, Path]
) -> None:
    gone = channel_message(Channel.ANDROID, token(), target_ref="device:9")
    sandbox[0].faults.add("UNREGISTERED", target=gone["target"])
    seen: list[str] = []

    async def deactivate(_channel: Channel, ref: str, _reason: str) -> None:
        seen.append(ref)

    env.publish([gone])
    stats = await env.run(adapter(sandbox), deactivate=deactivate)
    assert (stats.dead_lettered, seen) == (1, ["device:9"])
    assert env.dead_letters()[0]["error_type"] == "UNREGISTERED"


async def test_internal_errors_are_retried_until_fcm_heals(
    env: DeliveryEnv, sandbox: tuple[FcmSandboxThread, Path]
) -> None:
    flaky = channel_message(Channel.ANDROID, token())
    sandbox[0].faults.add("INTERNAL", target=flaky["target"], times=2)
    env.publish([flaky])
    stats = await env.run(adapter(sandbox))
    assert (stats.sent, stats.retried) == (1, 2)
    assert (await env.log_rows())[flaky["delivery_id"]][:2] == ("sent", 3)


async def test_exhausted_deliveries_are_dead_lettered_and_replayed_once_healed(
    env: DeliveryEnv, sandbox: tuple[FcmSandboxThread, Path]
) -> None:
    await exhaust_then_replay(
        env, lambda: adapter(sandbox), sandbox[0].faults, [token() for _ in range(3)], "INTERNAL"
    )

"""The Android worker with a service-account key the FCM token endpoint refuses: every message is
dead-lettered at its first attempt, naming the refusal, nothing is sent and no device is deactivated
(the policy of the other channels' bad credentials); a replay once the key is fixed delivers them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from consumers.delivery.dead_letters import Selection, read_letters, replay
from consumers.delivery.delivery_log import DeliveryLog
from consumers.delivery.fcm import AccessToken, FcmAdapter
from notify_core.settings import Settings
from notify_core.topics import Channel
from sandboxes.fcm import FcmSandbox, FcmSandboxThread, ServiceAccount, write_service_account
from tests.delivery_harness import DeliveryEnv, channel_message, delivery_env

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FcmSandboxThread, ServiceAccount]]:
    with FcmSandbox.run_in_thread() as box:
        yield box, box.create_service_account(tmp_path_factory.mktemp("fcm"))


@pytest_asyncio.fixture
async def env(settings: Settings, db_schema: tuple[Settings, str]) -> AsyncIterator[DeliveryEnv]:
    async with delivery_env(settings, db_schema[1], Channel.ANDROID) as made:
        yield made


def adapter(box: FcmSandboxThread, credentials: Path) -> FcmAdapter:
    return FcmAdapter(
        endpoint=box.endpoint, project_id="notify-sandbox", token=AccessToken.from_file(credentials)
    )


async def test_a_refused_service_account_dead_letters_at_once_and_replays_once_fixed(
    env: DeliveryEnv, sandbox: tuple[FcmSandboxThread, ServiceAccount], tmp_path: Path
) -> None:
    box, account = sandbox
    # The right account, the wrong key: Google answers invalid_grant "Invalid JWT Signature."
    forged = write_service_account(
        tmp_path, token_uri=box.sandbox.token_uri, client_email=account.client_email
    )
    messages = [channel_message(Channel.ANDROID, f"fcm-{uuid.uuid4().hex}") for _ in range(3)]
    deactivated: list[str] = []

    async def deactivate(_channel: Channel, ref: str, _reason: str) -> None:
        deactivated.append(ref)

    env.publish(messages)
    stats = await env.run(adapter(box, forged.path), deactivate=deactivate)
    assert (stats.sent, stats.retried, stats.dead_lettered) == (0, 0, 3)
    assert deactivated == []  # the devices are fine: our key is not
    targets = {m["target"] for m in messages}
    assert [r for r in box.recorder.all() if r.target in targets] == []
    letters = read_letters(env.settings, Channel.ANDROID.value, Selection(reason="oauth_invalid_grant"))
    assert len(letters) == 3
    assert {item.letter["attempts"] for item in letters} == {1}
    assert all("Invalid JWT Signature" in item.letter["error_message"] for item in letters)

    # The key is fixed: the operator replays by reason, and each message goes out once.
    log = DeliveryLog(env.pool, owner="replay", lease=timedelta(seconds=30))
    assert await replay(env.settings, Channel.ANDROID.value, letters, log) == 3
    again = await env.run(adapter(box, account.path))
    assert again.sent == 3
    rows = await env.log_rows()
    assert {rows[m["delivery_id"]][0] for m in messages} == {"sent"}

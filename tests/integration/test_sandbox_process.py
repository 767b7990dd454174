"""Each channel's sandbox in a process of its own: adapters reach it, and its receipts come back."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notify_core.topics import Channel
from sandboxes.messages import channel_message
from sandboxes.process import SandboxProcess, sandbox_process, worker_env

pytestmark = pytest.mark.integration

TARGETS: dict[Channel, list[str]] = {
    Channel.IOS: [f"{i:064x}" for i in (1, 2)],
    Channel.ANDROID: ["fcm-token-000000000001", "fcm-token-000000000002"],
    Channel.SMS: ["+15550000001", "+15550000002"],
    Channel.EMAIL: ["user-1@example.com", "user-2@example.com"],
}
TEXT = "Your code, sent at t=123.5, expires soon"


@pytest.fixture(params=list(Channel), ids=lambda c: c.value)
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SandboxProcess]:
    with sandbox_process(request.param, tmp_path, sms_max_per_second=50.0) as started:
        yield started


def wait_for(box: SandboxProcess, count: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while box.count() < count and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.asyncio
async def test_adapter_sends_are_received_with_their_markers(box: SandboxProcess) -> None:
    assert box.pid != os.getpid()
    assert box.env
    assert all(key.startswith("NOTIFY_") for key in box.env)
    adapter = box.make_adapter()
    before = time.time()
    try:
        for target in TARGETS[box.channel]:
            message = channel_message(box.channel, target, body=TEXT, sms_text=TEXT, email_text=TEXT)
            outcome = await adapter.send(message)
            assert outcome.reason == "ok", outcome
    finally:
        await adapter.close()
    wait_for(box, 2)
    receipts = box.receipts()
    assert [r.target for r in receipts] == TARGETS[box.channel]
    assert {r.answered for r in receipts} == {"ok"}
    assert {r.marker for r in receipts} == {123.5}
    assert all(before - 1 <= r.at <= time.time() for r in receipts)
    assert box.count() == 2


def test_env_points_a_worker_at_every_sandbox(tmp_path: Path) -> None:
    with (
        sandbox_process(Channel.SMS, tmp_path, sms_max_per_second=50.0) as sms,
        sandbox_process(Channel.EMAIL, tmp_path) as email,
    ):
        env = worker_env({Channel.SMS: sms, Channel.EMAIL: email})
        assert env["NOTIFY_SNS_ENDPOINT"] == sms.ready["endpoint"]
        assert env["NOTIFY_SMS_MAX_PER_SECOND"] == "50.0"
        assert env["NOTIFY_SMTP_PORT"] == str(email.ready["port"])
        pid = sms.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped on exit

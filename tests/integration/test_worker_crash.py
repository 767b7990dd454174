"""A channel worker SIGKILLed mid-stream and restarted: every delivery made, none acknowledged twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from notify_core.db.connect import connect, schema_url
from notify_core.settings import Settings
from notify_core.topics import Channel
from sandboxes.apns import ApnsSandbox
from sandboxes.messages import channel_message, publish
from sandboxes.tls import generate_es256_key

pytestmark = pytest.mark.integration

DELIVERIES = 5_000
KEY_ID, TEAM_ID = "KEYID12345", "TEAM123456"


def sent_ids(settings: Settings, schema: str) -> set[str]:
    with connect(settings, schema=schema) as conn:
        return {r[0] for r in conn.execute("select delivery_id from delivery_log where status = 'sent'")}


@pytest.mark.parametrize(
    ("stop_signal", "exit_code"),
    [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 0)],
    ids=["sigkill", "sigterm"],
)
def test_worker_stopped_mid_stream_resends_nothing_it_had_acknowledged(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path, stop_signal: int, exit_code: int
) -> None:
    """SIGKILL: only in-doubt sends (answered, not yet marked) may repeat. SIGTERM: the worker drains
    what is in flight and commits, so nothing repeats at all."""
    schema = db_schema[1]
    key = generate_es256_key()
    messages = [channel_message(Channel.IOS, uuid.uuid4().hex * 2) for _ in range(DELIVERIES)]
    by_target = {m["target"]: m["delivery_id"] for m in messages}
    publish(settings, Channel.IOS, messages)

    with ApnsSandbox.run_in_thread(
        public_key_pem=key.public_pem, key_id=KEY_ID, team_id=TEAM_ID, cert_dir=tmp_path
    ) as sandbox:
        env = {
            **os.environ,
            "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
            "NOTIFY_WORKER_GROUP_PREFIX": settings.topic_prefix,
            "NOTIFY_WORKER_INSTANCE_ID": "crash-test",
            "NOTIFY_DATABASE_URL": schema_url(settings, schema),
            "NOTIFY_APNS_ENDPOINT": f"https://127.0.0.1:{sandbox.port}",
            "NOTIFY_APNS_CA_FILE": str(sandbox.ca_path),
            "NOTIFY_APNS_KEY": key.private_pem,
            "NOTIFY_APNS_KEY_ID": KEY_ID,
            "NOTIFY_APNS_TEAM_ID": TEAM_ID,
        }

        def worker(log: Path, *extra: str) -> subprocess.Popen[bytes]:
            args = [sys.executable, "-m", "notify_cli", "worker", "run", "--channel", "ios", *extra]
            with log.open("wb") as out:
                return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)

        first = worker(tmp_path / "first.log")
        try:
            deadline = time.monotonic() + 120
            while len(sandbox.sandbox.recorder.all()) < DELIVERIES // 3:
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "worker made no progress"
                time.sleep(0.05)
        finally:
            first.send_signal(stop_signal)
            code = first.wait(60)
        assert code == exit_code, (tmp_path / "first.log").read_text()[-2000:]
        acknowledged = sent_ids(settings, schema)
        at_kill = len(sandbox.sandbox.recorder.all())
        assert 0 < len(acknowledged) < DELIVERIES, "killed too late to prove anything"

        second = worker(tmp_path / "second.log", "--burst", "--idle", "3")
        assert second.wait(300) == 0, (tmp_path / "second.log").read_text()[-2000:]
        received = Counter(by_target[r.target] for r in sandbox.sandbox.recorder.all())

    assert set(received) == set(by_target.values()), "some deliveries were never made"
    doubled = {d for d, n in received.items() if n > 1}
    assert doubled.isdisjoint(acknowledged), "a delivery marked sent was sent again"
    assert sent_ids(settings, schema) == set(by_target.values())
    if stop_signal == signal.SIGTERM:
        assert doubled == set(), "a graceful stop must leave nothing in doubt"
    # In-doubt sends (provider answered, the worker died before marking) are the only repeats.
    name = signal.Signals(stop_signal).name
    print(
        f"\n{name} after {at_kill} sends ({len(acknowledged)} marked sent); in-doubt resends: {len(doubled)}"
    )

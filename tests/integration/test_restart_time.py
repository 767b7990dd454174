"""A SIGKILLed router or worker, started again, is back at work in seconds, not after ~50 s.

Before, the restarted process waited for its dead predecessor's 45 s group session to lapse before
it got any partition. Now each is a static group member under its instance id (KIP-345), and the
session is 10 s where it is not. Run with ``-s`` to see the figures; the bound asserted is loose
(half of the old wait), since speed belongs to benchmarks.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from notify_core.db.connect import make_pool, schema_url
from notify_core.kafka_clients import make_consumer
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient
from sandboxes.messages import channel_message, publish
from tests.pipeline import Process, router, sandboxes, seed, targets, worker

pytestmark = pytest.mark.integration
OLD_WAIT_S = 50.0


class Counted:
    """Counts the records on a topic, read_committed, as they come."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._consumer = make_consumer(settings, f"count-{uuid.uuid4().hex}")
        self._consumer.subscribe([topic])
        self.count = 0

    def poll(self) -> int:
        for message in self._consumer.consume(100, 0.1):
            if message.error() is None:
                self.count += 1
        return self.count

    def close(self) -> None:
        self._consumer.close()


def until(check: Callable[[], bool], process: Process, timeout_s: float = 60) -> float:
    began = time.monotonic()
    while not check():
        assert process.alive(), process.tail()
        assert time.monotonic() - began < timeout_s, "not back at work in time"
        time.sleep(0.05)
    return time.monotonic() - began


def test_a_killed_router_and_worker_are_back_at_work_within_seconds(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path
) -> None:
    """Restart to first routed record, and restart to first delivery, each well under the old ~50 s."""
    schema = db_schema[1]
    users = [f"restart-{i}" for i in range(3)]
    pool = make_pool(settings, schema=schema, max_size=2)
    seed(UserDataRepository(pool), users)
    pool.close()
    routed = Counted(settings, topic_names(settings).channel(Channel.EMAIL))
    with sandboxes(tmp_path / "sandboxes") as boxes:
        env = {
            **os.environ,
            **boxes.env,
            "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "NOTIFY_DATABASE_URL": schema_url(settings, schema),
            "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
            "NOTIFY_ROUTER_GROUP": f"{settings.topic_prefix}-router",
            "NOTIFY_ROUTER_INSTANCE_ID": "r1",
            "NOTIFY_WORKER_GROUP_PREFIX": settings.topic_prefix,
            "NOTIFY_WORKER_INSTANCE_ID": "w1",
        }
        request = {"template_id": "hello", "service": "tests", "category": "account", "channels": ["email"]}

        def send(user: str) -> None:
            with NotificationClient(settings) as client:
                client.send({**request, "user_id": user, "params": {"name": user}})

        first = router(env, tmp_path / "router-1.log")
        send(users[0])
        until(lambda: routed.poll() >= 1, first)
        first.popen.send_signal(signal.SIGKILL)
        first.popen.wait(10)
        second = router(env, tmp_path / "router-2.log")
        send(users[1])
        router_back = until(lambda: routed.poll() >= 2, second)
        second.stop()
        routed.close()

        sms = boxes.recorders[Channel.SMS]
        number = targets(users[2])[Channel.SMS]

        def delivered(n: int) -> Callable[[], bool]:
            return lambda: sum(1 for r in sms.delivered() if r.target == number) >= n

        one = worker(Channel.SMS, env, tmp_path / "worker-1.log")
        publish(settings, Channel.SMS, [channel_message(Channel.SMS, number)])
        until(delivered(1), one)
        one.popen.send_signal(signal.SIGKILL)
        one.popen.wait(10)
        two = worker(Channel.SMS, env, tmp_path / "worker-2.log")
        publish(settings, Channel.SMS, [channel_message(Channel.SMS, number)])
        worker_back = until(delivered(2), two)
        assert two.stop() == 0, two.tail()

    print(f"\nrestart to first routed record: {router_back:.1f}s; to first delivery: {worker_back:.1f}s")
    assert router_back < OLD_WAIT_S / 2
    assert worker_back < OLD_WAIT_S / 2

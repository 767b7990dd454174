"""Two routers and two workers per channel, all with default identities, through 10,000 requests.

Every process is started from the CLI with no instance id set: each claims its own slot in
PostgreSQL, so the routers' transactional ids and the workers' delivery-log owners and group
instance ids are distinct. Halfway through, one of each is stopped with SIGTERM and another started
in its place (a rebalance in every group). Measured at the sandboxes, every delivery
arrives exactly once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from notify_core.db.connect import make_pool, schema_url
from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.topic_admin import apply_topics
from notify_core.topics import Channel, topic_specs
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient
from tests.pipeline import Process, router, sandboxes, seed, targets, wait_for_members, worker

pytestmark = pytest.mark.integration
REQUESTS = 10_000
CHANNELS = list(Channel)


def stats_of(process: Process) -> dict[str, Any]:
    """The JSON line a router or worker prints when it stops."""
    for line in reversed(process.log.read_text(errors="replace").splitlines()):
        if line.startswith("{") and ('"records"' in line or '"consumed"' in line):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise AssertionError(f"no stats line in {process.log}:\n{process.tail()}")


def test_two_of_each_with_default_identities_deliver_everything_exactly_once(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both routers and both workers of each channel work; a SIGTERM and a replacement halfway
    loses nothing and repeats nothing."""
    # Default identities: nothing pins an instance id, so every process claims a slot.
    monkeypatch.delenv("NOTIFY_ROUTER_INSTANCE_ID", raising=False)
    monkeypatch.delenv("NOTIFY_WORKER_INSTANCE_ID", raising=False)
    own = settings.model_copy(update={"topic_partitions": 6, "topic_prefix": f"{settings.topic_prefix}-x2"})
    admin = make_admin(own)
    apply_topics(admin, topic_specs(own))
    try:
        run_two_of_each(own, db_schema[1], tmp_path)
    finally:
        for future in admin.delete_topics([s.name for s in topic_specs(own)], operation_timeout=30).values():
            future.result()


def run_two_of_each(own: Settings, schema: str, tmp_path: Path) -> None:
    users = [f"x2-{i:05d}" for i in range(REQUESTS)]
    pool = make_pool(own, schema=schema, max_size=2)
    seed(UserDataRepository(pool), users)
    pool.close()
    channel_of = {u: CHANNELS[i % len(CHANNELS)] for i, u in enumerate(users)}
    expected = {targets(u)[channel_of[u]] for u in users}

    with sandboxes(tmp_path / "sandboxes") as boxes:
        env = {
            **boxes.env,
            "NOTIFY_KAFKA_BOOTSTRAP": own.kafka_bootstrap,
            "NOTIFY_DATABASE_URL": schema_url(own, schema),
            "NOTIFY_TOPIC_PREFIX": own.topic_prefix,
            "NOTIFY_ROUTER_GROUP": f"{own.topic_prefix}-router",
            "NOTIFY_WORKER_GROUP_PREFIX": own.topic_prefix,
            "NOTIFY_SMS_MAX_PER_SECOND": "500",
            # A stopped worker finishes what it has in flight (up to 256 deliveries) within its
            # shutdown grace, and what is still in flight after it may be sent again by its
            # replacement. The 15 s default drains an e-mail worker's 256 on an idle machine, not
            # on two cores shared with another test worker (about 15 a second: 33 were left and
            # 2 sent twice). Exactly once is what is asserted, so the grace is long enough for it.
            "NOTIFY_DELIVERY_SHUTDOWN_GRACE_S": "45",
        }
        logs = tmp_path / "logs"
        logs.mkdir()
        routers = [router(env, logs / f"router-{n}.log") for n in (1, 2)]
        workers = {c: [worker(c, env, logs / f"{c.value}-{n}.log") for n in (1, 2)] for c in CHANNELS}
        everyone = [*routers, *(w for pair in workers.values() for w in pair)]
        # Every group settles with both members before traffic starts.
        wait_for_members(own, f"{own.topic_prefix}-router", 2)
        for channel in CHANNELS:
            wait_for_members(own, f"{own.topic_prefix}-{channel.value}", 2)
        for process in everyone:
            assert process.alive(), process.tail()

        with NotificationClient(own) as client:
            for start in range(0, REQUESTS, 1000):
                client.send_batch(
                    [
                        {
                            "user_id": u,
                            "template_id": "hello",
                            "service": "tests",
                            "category": "account",
                            "channels": [channel_of[u].value],
                            "params": {"name": u},
                        }
                        for u in users[start : start + 1000]
                    ]
                )
        deadline = time.monotonic() + 300
        while len(set(boxes.delivered()) & expected) < len(expected) // 2:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.2)

        # Halfway: one of each stops gracefully, and a replacement takes its place.
        stopped = [routers[0], *(pair[0] for pair in workers.values())]
        codes = {p.log.name: p.stop() for p in stopped}
        replacements = [router(env, logs / "router-3.log")]
        replacements += [worker(c, env, logs / f"{c.value}-3.log") for c in CHANNELS]

        while not expected <= set(boxes.delivered()):
            assert time.monotonic() < deadline, f"{len(expected - set(boxes.delivered()))} never delivered"
            for process in [*everyone, *replacements]:
                assert process in stopped or process.alive(), process.tail()
            time.sleep(0.2)
        time.sleep(2)  # anything sent twice would arrive now
        survivors = [p for p in everyone if p not in stopped] + replacements
        codes |= {p.log.name: p.stop() for p in survivors}
        delivered = boxes.delivered()

    assert codes == dict.fromkeys(codes, 0), codes
    mine = {t: n for t, n in delivered.items() if t in expected}
    assert set(mine) == expected
    twice = {t: n for t, n in mine.items() if n > 1}
    assert twice == {}, f"{len(twice)} deliveries made more than once"
    per_process = {p.log.name: stats_of(p) for p in [*everyone, *replacements]}
    for name in ("router-1.log", "router-2.log"):
        assert per_process[name]["records"] > 0, f"{name} routed nothing"
    for channel in CHANNELS:
        for n in (1, 2):
            assert per_process[f"{channel.value}-{n}.log"]["sent"] > 0, f"{channel.value}-{n} sent nothing"
    summary = {name: s.get("records", s.get("sent")) for name, s in per_process.items()}
    print(f"\n{len(expected)} deliveries, each exactly once; per process: {summary}")

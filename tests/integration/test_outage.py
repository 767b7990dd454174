"""PostgreSQL and the broker go away for 20 s each under live traffic: nothing lost, nothing sent twice.

The router and one worker per channel run as subprocesses against a private stack (its own Kafka
and PostgreSQL on other ports, so stopping them disturbs no other test), with every provider's
sandbox in this process. Requests are sent before and during each outage; afterwards every one of
them must arrive at its sandboxes exactly once, with no manual step, and every process must still
be running and stop cleanly on SIGTERM.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from notify_core.db.connect import connect, make_pool
from notify_core.db.migrate import migrate
from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.stack import kafka_broker, postgres
from notify_core.topic_admin import apply_topics
from notify_core.topics import Channel, topic_specs
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient
from tests.pipeline import Process, Sandboxes, router, sandboxes, seed, targets, worker
from tests.private_stack import OUTAGE, private_stack_fixture

pytestmark = pytest.mark.integration

OUTAGE_S = 20.0
PER_PHASE = 40  # requests per phase; each reaches 4 targets


private_stack = private_stack_fixture(OUTAGE)


def env_for(settings: Settings, boxes: Sandboxes) -> dict[str, str]:
    return {
        **boxes.env,
        "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NOTIFY_DATABASE_URL": settings.database_url.get_secret_value(),
        "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFY_ROUTER_GROUP": f"{settings.topic_prefix}-router",
        "NOTIFY_WORKER_GROUP_PREFIX": settings.topic_prefix,
        "NOTIFY_DELIVERY_BACKOFF_BASE_S": "0.5",
        "NOTIFY_DELIVERY_BACKOFF_MAX_S": "2",
    }


def send(settings: Settings, users: list[str]) -> None:
    with NotificationClient(settings) as client:
        client.send_batch(
            [
                {
                    "user_id": u,
                    "template_id": "hello",
                    "service": "tests",
                    "category": "account",
                    "params": {"name": u},
                }
                for u in users
            ]
        )


def wait_for(boxes: Sandboxes, expected: set[str], processes: list[Process], timeout_s: float) -> float:
    """Seconds until every expected target has been delivered to; fails if a process died."""
    began = time.monotonic()
    while not expected <= set(boxes.delivered()):
        for process in processes:
            assert process.alive(), process.tail()
        assert time.monotonic() - began < timeout_s, (
            f"{len(expected - set(boxes.delivered()))} deliveries missing after {timeout_s:g}s"
        )
        time.sleep(0.2)
    return time.monotonic() - began


def test_the_pipeline_rides_out_a_database_and_a_broker_outage(
    private_stack: Settings, tmp_path: Path
) -> None:
    """Deliveries made exactly once at the sandboxes across a 20 s PostgreSQL and a 20 s broker outage."""
    settings = private_stack
    apply_topics(make_admin(settings), topic_specs(settings))
    with connect(settings) as conn:
        migrate(conn)
    phases = [[f"{settings.topic_prefix}-{p}-{i:03d}" for i in range(PER_PHASE)] for p in "abcd"]
    pool = make_pool(settings, max_size=2)
    seed(UserDataRepository(pool), [u for phase in phases for u in phase])
    pool.close()
    expected = {t for phase in phases for u in phase for t in targets(u).values()}

    with sandboxes(tmp_path / "sandboxes") as boxes:
        env = env_for(settings, boxes)
        processes = [router({**env, "NOTIFY_ROUTER_INSTANCE_ID": "outage"}, tmp_path / "router.log")]
        processes += [
            worker(c, {**env, "NOTIFY_WORKER_INSTANCE_ID": "outage"}, tmp_path / f"{c.value}.log")
            for c in Channel
        ]
        try:
            send(settings, phases[0])
            first = {t for u in phases[0] for t in targets(u).values()}
            wait_for(boxes, first, processes, 120)

            postgres.stop(settings)
            send(settings, phases[1])  # accepted by the broker while the database is away
            time.sleep(OUTAGE_S)
            postgres.start(settings)
            db_recovery = wait_for(
                boxes, first | {t for u in phases[1] for t in targets(u).values()}, processes, 180
            )

            send(settings, phases[2])  # in flight when the broker goes
            kafka_broker.stop(settings)
            time.sleep(OUTAGE_S)
            kafka_broker.start(settings)
            send(settings, phases[3])
            broker_recovery = wait_for(boxes, expected, processes, 240)
        finally:
            codes = {p.log.name: p.stop() for p in processes}
        delivered = boxes.delivered()

    assert codes == dict.fromkeys(codes, 0), {name: codes[name] for name in codes if codes[name]}
    mine = {t: n for t, n in delivered.items() if t in expected}
    assert set(mine) == expected, "a delivery was lost"
    assert {t: n for t, n in mine.items() if n > 1} == {}, "a delivery was made twice"
    print(
        f"\n{len(expected)} deliveries exactly once; after PostgreSQL came back the backlog was"
        f" delivered in {db_recovery:.1f}s, after the broker came back in {broker_recovery:.1f}s"
    )

"""The worker's order of effects against a broker that goes away at the worst moment.

An in-process iOS worker (the real ``Worker``, ``ApnsAdapter`` and APNs sandbox) runs on a private
stack (``tests/private_stack.py``: a Kafka and a PostgreSQL of this module's own, so stopping the
broker disturbs no other test). The sandbox holds its answer to one device token until the broker
has been stopped: the provider has taken the request, and the worker hears the outcome only once no
record carrying it can be acknowledged. The behaviour asserted:

- while the broker is away, the worker keeps retrying the produces (it neither crashes nor drops the
  record), the delivery-log row stays ``sending`` and a dead target is not yet deactivated;
- once the broker is back, the dead letter and its events (or the SENT event) reach their topics,
  and only then does the row read ``dead_lettered`` (or ``sent``);
- nothing is lost and nothing is sent twice: one request at the provider, one letter, one event of
  each kind.

With the old order (``git show 5fece47:consumers/delivery/worker.py``: mark first, then produce)
the row would read ``dead_lettered`` while the broker was still down, and the failed produce stopped
the worker; its restart saw the row as done and skipped the record, so the letter was lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from consumers.delivery.apns import ApnsAdapter
from consumers.delivery.worker import WorkerStats
from notify_core.db.connect import connect
from notify_core.db.migrate import migrate
from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.stack import kafka_broker
from notify_core.topic_admin import apply_topics
from notify_core.topics import Channel, topic_specs
from sandboxes.apns import ApnsSandbox, SandboxThread
from sandboxes.faults import FaultPlan
from sandboxes.tls import Es256Key, generate_es256_key
from tests.delivery_harness import DeliveryEnv, channel_message, delivery_env
from tests.private_stack import EFFECTS, private_stack_fixture

# One worker for the module under pytest-xdist: its private stack is a module fixture, started once
# there rather than on both workers (where the second would wait for the first to release its folder).
pytestmark = [pytest.mark.integration, pytest.mark.asyncio, pytest.mark.xdist_group("effects-stack")]
private_stack = private_stack_fixture(EFFECTS)

KEY_ID, TEAM_ID = "KEYID12345", "TEAM123456"
PRODUCE_TIMEOUT_S = 3.0  # a produce into the stopped broker fails after this, and is tried again
HOLD_S = 3 * PRODUCE_TIMEOUT_S  # how long the broker stays away once the worker has the outcome


class LateAnswers(FaultPlan):
    """A fault plan that, for a held target, first runs ``before`` on the sandbox's thread: the
    sandbox has the request, and its answer (fault or success) leaves only once ``before`` returned."""

    def __init__(self) -> None:
        super().__init__()
        self._holds: dict[str, Callable[[], object]] = {}
        self.released = threading.Event()
        self.error: BaseException | None = None

    def hold(self, target: str, before: Callable[[], object]) -> None:
        self._holds[target] = before

    def pick(self, target: str) -> str | None:
        before = self._holds.pop(target, None)
        if before is not None:
            try:
                before()
            except BaseException as exc:  # told to the test, which is waiting on ``released``
                self.error = exc
            self.released.set()
        return super().pick(target)


@dataclass
class Stage:
    env: DeliveryEnv
    box: SandboxThread
    faults: LateAnswers
    key: Es256Key


@pytest.fixture(scope="module")
def key() -> Es256Key:
    return generate_es256_key()


@pytest.fixture
def sandbox(key: Es256Key, tmp_path: Path) -> Iterator[tuple[SandboxThread, LateAnswers]]:
    with ApnsSandbox.run_in_thread(
        public_key_pem=key.public_pem, key_id=KEY_ID, team_id=TEAM_ID, cert_dir=tmp_path
    ) as box:
        faults = box.sandbox.faults = LateAnswers()  # before any request: read by the sandbox per answer
        yield box, faults


@pytest_asyncio.fixture
async def stage(
    private_stack: Settings, sandbox: tuple[SandboxThread, LateAnswers], key: Es256Key
) -> AsyncIterator[Stage]:
    """Topics and a migrated schema of this test's own on the private stack, the broker up."""
    settings = private_stack.model_copy(
        update={
            "topic_prefix": f"e-{uuid.uuid4().hex[:10]}",
            "topic_partitions": 1,
            "produce_timeout_s": PRODUCE_TIMEOUT_S,
        }
    )
    kafka_broker.start(settings)  # idempotent; a failed test may have left it stopped
    admin = make_admin(settings)
    specs = topic_specs(settings)
    apply_topics(admin, specs)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with connect(settings) as conn:
        conn.execute(f'create schema "{schema}"')
        conn.commit()
    with connect(settings, schema=schema) as conn:
        migrate(conn)
        conn.commit()
    try:
        async with delivery_env(settings, schema, Channel.IOS) as env:
            yield Stage(env, sandbox[0], sandbox[1], key)
    finally:
        kafka_broker.start(settings)
        for future in admin.delete_topics([s.name for s in specs], operation_timeout=30).values():
            future.result()
        with connect(settings) as conn:
            conn.execute(f'drop schema "{schema}" cascade')
            conn.commit()


def adapter(stage: Stage) -> ApnsAdapter:
    return ApnsAdapter(
        endpoint=stage.box.sandbox.endpoint,
        key_pem=stage.key.private_pem,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic="com.example.notify",
        ca_file=stage.box.ca_path,
        timeout_s=60,  # the held answer takes as long as the broker takes to stop
    )


def token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


async def status_of(env: DeliveryEnv, delivery_id: str) -> str | None:
    row = (await env.log_rows()).get(delivery_id)
    return row[0] if row else None


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout_s, f"no {what} after {timeout_s:g}s"
        await asyncio.sleep(0.1)


@dataclass
class Run:
    while_down: set[str | None]  # every status the row had while the broker was away
    deactivated_while_down: int
    outages_while_down: int  # broker outages the worker's produces ran into
    final: str | None
    stats: WorkerStats
    letters: list[dict[str, Any]]
    events: list[dict[str, Any]]


async def through_an_outage(stage: Stage, message: dict[str, Any], deactivated: list[str]) -> Run:
    """Publish ``message``, run a worker, stop the broker before the provider answers it, keep the
    broker away for ``HOLD_S`` while watching the row, start it again, and wait for the row's mark."""
    env, settings, delivery_id = stage.env, stage.env.settings, message["delivery_id"]

    async def deactivate(_channel: Channel, ref: str, _reason: str) -> None:
        deactivated.append(ref)

    stage.faults.hold(message["target"], lambda: kafka_broker.stop(settings))
    env.publish([message])
    worker = env.worker(adapter(stage), deactivate=deactivate)
    run = asyncio.create_task(worker.run(max_runtime_s=300))
    try:
        await until(lambda: stage.faults.released.is_set() or run.done(), 120, "request at the sandbox")
        assert stage.faults.error is None, stage.faults.error
        assert not kafka_broker.answering(settings)
        # The outcome is on its way to the worker, and no record carrying it can be acknowledged.
        while_down: set[str | None] = set()
        began = time.monotonic()
        while time.monotonic() - began < HOLD_S:
            while_down.add(await status_of(env, delivery_id))
            await asyncio.sleep(0.1)
        deactivated_while_down, outages = len(deactivated), worker.broker.outages
        assert not run.done(), "the worker stopped while the broker was away"
        await asyncio.to_thread(kafka_broker.start, settings)
        final: str | None = None
        began = time.monotonic()
        while final in (None, "sending"):
            assert time.monotonic() - began < 120, "the row was never marked after the broker came back"
            await asyncio.sleep(0.1)
            final = await status_of(env, delivery_id)
        # The moment the row is marked, what carries the outcome must already be on its topics.
        letters, events = await asyncio.gather(
            asyncio.to_thread(env.dead_letters), asyncio.to_thread(env.events)
        )
    finally:
        worker.stop()
        stats = await run
    return Run(while_down, deactivated_while_down, outages, final, stats, letters, events)


def kinds(events: list[dict[str, Any]], delivery_id: str) -> Counter[str]:
    """Event types of one delivery, each event counted once (a retried produce keeps its event_id)."""
    mine = {e["event_id"]: e["event_type"] for e in events if e["delivery_id"] == delivery_id}
    return Counter(mine.values())


async def test_a_dead_letter_the_broker_cannot_take_is_waited_for_and_the_row_marked_only_after_it(
    stage: Stage,
) -> None:
    """Unregistered, answered once the broker is down: the worker rides the outage out with the row
    ``sending`` and the device still active; after the broker is back, the letter, FAILED_PERMANENT,
    DEAD_LETTERED and TARGET_DEACTIVATED are on their topics, the device is deactivated, and the row is
    ``dead_lettered``. One request at the provider, one letter, nothing lost."""
    dead = channel_message(Channel.IOS, token(), target_ref="device:42")
    stage.faults.add("Unregistered", target=dead["target"])
    deactivated: list[str] = []

    run = await through_an_outage(stage, dead, deactivated)

    assert run.while_down == {"sending"}, "the row was marked before the dead letter was acknowledged"
    assert run.deactivated_while_down == 0, "the device was deactivated before the outcome was acknowledged"
    assert run.outages_while_down >= 1, "no produce ran into the outage: the test proved nothing"
    assert run.final == "dead_lettered"
    assert deactivated == ["device:42"]
    assert [r.answered for r in stage.box.sandbox.recorder.all()] == ["Unregistered"]
    [letter] = run.letters
    assert (letter["error_type"], letter["attempts"], letter["stage"]) == ("Unregistered", 1, "worker.ios")
    assert kinds(run.events, dead["delivery_id"]) == Counter(
        {"FAILED_PERMANENT": 1, "DEAD_LETTERED": 1, "TARGET_DEACTIVATED": 1}
    )
    assert (run.stats.dead_lettered, run.stats.deactivated, run.stats.sent, run.stats.internal_errors) == (
        1,
        1,
        0,
        0,
    )


async def test_a_sent_row_is_marked_only_after_its_sent_event_is_acknowledged(stage: Stage) -> None:
    """Accepted by the provider once the broker is down: the row stays ``sending`` through the outage
    and reads ``sent`` only once the SENT event is on the events topic; the device is asked once."""
    message = channel_message(Channel.IOS, token())

    run = await through_an_outage(stage, message, [])

    assert run.while_down == {"sending"}, "the row was marked before the SENT event was acknowledged"
    assert run.outages_while_down >= 1, "no produce ran into the outage: the test proved nothing"
    assert run.final == "sent"
    assert [r.answered for r in stage.box.sandbox.recorder.all()] == ["ok"]
    assert kinds(run.events, message["delivery_id"]) == Counter({"SENT": 1})
    assert run.letters == []
    assert (run.stats.sent, run.stats.dead_lettered, run.stats.internal_errors) == (1, 0, 0)

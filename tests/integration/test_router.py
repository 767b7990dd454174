"""The router on the real stack: fan-out, suppression reasons, dedupe, caps, quiet hours, dead letters."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from time import monotonic, sleep
from typing import Any

import pytest

from consumers.router.app import Router, RouterStats
from notify_core.codec import CHANNEL_MESSAGE, DEAD_LETTER, EVENT, REQUEST, default_codec
from notify_core.db.connect import connect, make_pool
from notify_core.db.migrate import migrate
from notify_core.kafka_clients import make_admin, make_consumer, make_producer
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from notify_core.tracking import Purpose, TrackingSigner
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient, NotificationRequest

pytestmark = pytest.mark.integration


@dataclass
class RouterEnv:
    settings: Settings
    schema: str
    repo: UserDataRepository

    def router(self, clock: Callable[[], datetime] | None = None) -> Router:
        kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
        return Router(self.settings, lambda: connect(self.settings, schema=self.schema), self.repo, **kwargs)

    def run(self, clock: Callable[[], datetime] | None = None) -> RouterStats:
        return self.router(clock).run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120)

    def read(
        self, topic: str, schema: str, count: int = 10_000, timeout_s: float = 20
    ) -> list[dict[str, Any]]:
        codec = default_codec()
        records = read_records(self.settings, topic, max_records=count, timeout_s=timeout_s, idle_s=1.5)
        return [codec.decode(r.value or b"", schema) for r in records]

    def channel(self, channel: Channel) -> list[dict[str, Any]]:
        return self.read(topic_names(self.settings).channel(channel), CHANNEL_MESSAGE)

    def events(self) -> list[dict[str, Any]]:
        return self.read(topic_names(self.settings).events, EVENT)


@pytest.fixture
def env(settings: Settings, db_schema: tuple[Settings, str]) -> Iterator[RouterEnv]:
    schema = db_schema[1]
    routed = settings.model_copy(update={"router_group": f"router-{uuid.uuid4().hex[:8]}"})
    with connect(routed, schema=schema) as conn:
        migrate(conn)
    pool = make_pool(routed, schema=schema, min_size=1, max_size=2)
    repo = UserDataRepository(pool)
    for channel in Channel:
        repo.put_template(
            Template(
                "welcome",
                channel,
                "en",
                1,
                title="Welcome {{ name }}",
                body="Hello {{ name }}",
                sms_text="Hi {{ name }}",
                email_subject="Welcome {{ name }}",
                email_html="<p>Hello {{ name }}</p>",
                email_text="Hello {{ name }}",
            )
        )
        repo.put_template(
            Template(
                "welcome",
                channel,
                "fr",
                1,
                title="Bienvenue {{ name }}",
                body="Bonjour {{ name }}",
                sms_text="Salut {{ name }}",
                email_subject="Bienvenue {{ name }}",
                email_html="<p>Bonjour {{ name }}</p>",
                email_text="Bonjour {{ name }}",
            )
        )
    yield RouterEnv(routed, schema, repo)
    pool.close()


def add_full_user(repo: UserDataRepository, user_id: str, locale: str = "fr") -> None:
    repo.upsert_user(user_id, locale, "Europe/Paris")
    repo.add_device(user_id, "ios", f"{user_id}-ios-1", "app")
    repo.add_device(user_id, "ios", f"{user_id}-ios-2", "app")
    repo.add_device(user_id, "android", f"{user_id}-android-1", "app")
    repo.add_email(user_id, f"{user_id}@example.com")
    repo.add_phone(user_id, "+33612345678")


def request(user_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "template_id": "welcome",
        "service": "signup",
        "category": "account",
        "params": {"name": "Ada"},
        **overrides,
    }


def test_push_and_email_only_user_gets_three_pushes_and_one_email_in_french(env: RouterEnv) -> None:
    add_full_user(env.repo, "u-fr")
    env.repo.set_preference("u-fr", "account", Channel.SMS, opted_in=False)
    with NotificationClient(env.settings) as client:
        sent = client.send(request("u-fr"))

    stats = env.run()
    assert stats.records == 1

    ios, android, sms, email = (env.channel(c) for c in Channel)
    assert sorted(m["target"] for m in ios) == ["u-fr-ios-1", "u-fr-ios-2"]
    assert [m["target"] for m in android] == ["u-fr-android-1"]
    assert sms == []
    assert [m["target"] for m in email] == ["u-fr@example.com"]
    assert {m["body"] for m in ios + android} == {"Bonjour Ada"}
    assert email[0]["email_subject"] == "Bienvenue Ada"
    # Tracking is on by default: the mail gets its open pixel, each push a token naming its delivery.
    signer = TrackingSigner.from_settings(env.settings)
    html, _, pixel = email[0]["email_html"].partition('<img src="')
    assert html == "<p>Bonjour Ada</p>"
    token = pixel.partition('"')[0].removeprefix(f"{env.settings.public_base_url}/t/open/")
    assert signer.verify(Purpose.OPEN, token).delivery_id == email[0]["delivery_id"]
    for push in ios + android:
        opened = signer.verify(Purpose.PUSH_OPEN, push["data"]["notify_tracking"])
        assert opened.delivery_id == push["delivery_id"]
    assert all(m["notification_id"] == sent.notification_id and m["locale"] == "fr" for m in ios + email)
    assert len({m["delivery_id"] for m in ios + android + email}) == 4

    events = env.events()
    kinds = Counter((e["event_type"], e["channel"], e["reason"]) for e in events)
    assert kinds == {
        ("ROUTED", "IOS", None): 2,
        ("ROUTED", "ANDROID", None): 1,
        ("ROUTED", "EMAIL", None): 1,
        ("SUPPRESSED", "SMS", "opted_out"): 1,
    }


def test_resent_request_produces_nothing_the_second_time(env: RouterEnv) -> None:
    add_full_user(env.repo, "u-dup")
    first = request("u-dup", channels=["email"], idempotency_key="order-1")
    same_id = {**first, "notification_id": str(uuid.uuid4())}
    with NotificationClient(env.settings) as client:
        client.send(same_id)
        client.send(same_id)  # same notification_id
        client.send({**first, "notification_id": str(uuid.uuid4())})  # same idempotency key
    env.run()
    assert len(env.channel(Channel.EMAIL)) == 1
    reasons = Counter(e["reason"] for e in env.events() if e["event_type"] == "SUPPRESSED")
    assert reasons == {"duplicate": 2}


def test_malformed_and_unrenderable_requests_go_to_the_dead_letter_topic(env: RouterEnv) -> None:
    add_full_user(env.repo, "u-bad")
    names = topic_names(env.settings)
    producer = make_producer(env.settings)
    producer.produce(names.requests, key=b"u-bad", value=b"\x00not avro at all")
    producer.flush(10)
    with NotificationClient(env.settings) as client:
        client.send(request("u-bad", channels=["email"], params={}))  # {{ name }} is missing
        client.send(request("u-bad", channels=["email"]))  # a good one after the bad ones
    env.run()
    letters = env.read(names.requests_dlq, DEAD_LETTER)
    assert sorted(d["error_type"] for d in letters) == ["decode_error", "missing_param"]
    assert any(d["payload"] == b"\x00not avro at all" for d in letters)
    assert "name" in next(d["error_message"] for d in letters if d["error_type"] == "missing_param")
    assert len(env.channel(Channel.EMAIL)) == 1


def test_daily_cap_suppresses_the_fourth_marketing_push(env: RouterEnv) -> None:
    env.repo.upsert_category("marketing", mandatory=False, caps={Channel.ANDROID: 3})
    env.repo.upsert_user("u-cap", "en", "UTC")
    env.repo.add_device("u-cap", "android", "cap-token", "app")
    with NotificationClient(env.settings) as client:
        client.send_batch([request("u-cap", category="marketing", channels=["android"]) for _ in range(4)])
        client.send(request("u-cap", category="marketing", channels=["android"], priority="critical"))
    env.run()
    assert len(env.channel(Channel.ANDROID)) == 4  # three capped normal ones, plus the critical one
    assert Counter(e["reason"] for e in env.events() if e["event_type"] == "SUPPRESSED") == {"capped": 1}


def test_quiet_hours_defer_until_morning_then_release(env: RouterEnv) -> None:
    env.repo.upsert_user("u-night", "en", "UTC")
    env.repo.add_phone("u-night", "+12015550100")
    env.repo.set_quiet_hours("u-night", time(22, 0), time(7, 0))
    with NotificationClient(env.settings) as client:
        client.send(request("u-night", channels=["sms"]))

    night = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0)
    env.run(clock=lambda: night)
    assert env.channel(Channel.SMS) == []

    env.run(clock=lambda: night + timedelta(hours=9))  # 08:00 the next day
    [sms] = env.channel(Channel.SMS)
    assert sms["sms_text"] == "Hi Ada"


def test_a_slow_group_join_does_not_end_a_burst_run_before_it_read_anything(env: RouterEnv) -> None:
    """Burst mode used to count idle time from start-up: a join slower than ``idle_s`` followed by an
    empty first fetch ended the run before it read anything. A busy CI machine can do both."""
    add_full_user(env.repo, "u-late")
    names = topic_names(env.settings)
    admin = make_admin(env.settings)
    # The request waits in an open transaction, so the router's first fetch after joining is empty.
    writer = make_producer(env.settings, transactional_id=f"late-{uuid.uuid4().hex[:8]}")
    writer.init_transactions(30)
    writer.begin_transaction()
    value = default_codec().encode(REQUEST, NotificationRequest.parse(request("u-late")).to_avro())
    writer.produce(names.requests, key=b"u-late", value=value)
    writer.flush(10)
    # Another member holds the group and stops polling: the router's join waits until it is dropped
    # (max.poll.interval.ms), longer than the router's idle budget.
    quick: dict[str, Any] = {"session.timeout.ms": 6000, "max.poll.interval.ms": 8000}
    holder = make_consumer(env.settings, env.settings.router_group, **quick)
    holder.subscribe([names.requests])
    deadline = monotonic() + 30
    while not holder.assignment():
        assert monotonic() < deadline, "the holder never joined"
        holder.poll(0.2)
    holder_id = holder.memberid()

    def commit_once_the_router_holds_the_partitions() -> None:
        until = monotonic() + 60
        while monotonic() < until:
            group = admin.describe_consumer_groups([env.settings.router_group])[env.settings.router_group]
            members = group.result(10).members
            routers = [m for m in members if m.member_id != holder_id and m.assignment.topic_partitions]
            if len(members) == 1 and routers:  # the holder is gone and the router has the partitions
                break
            sleep(0.1)
        sleep(1.0)  # the router has seen its partitions and found them empty by now
        writer.commit_transaction(30)

    committer = threading.Thread(target=commit_once_the_router_holds_the_partitions)
    started = monotonic()
    committer.start()
    try:
        stats = env.router().run(stop_when_idle=True, idle_s=5.0, max_runtime_s=120)
    finally:
        committer.join(90)
        holder.close()
    assert monotonic() - started > 5, "the join was not slower than the idle budget: this proves nothing"
    assert stats.records == 1
    assert len(env.channel(Channel.IOS)) == 2

"""``notify demo``: run what exists end to end on the local stack and print a readable summary.

Today that is: start the stack, create the topics, migrate and seed the user database, publish
requests with the SDK (and show how a bad one is refused), route them with the router in burst
mode, and show the channel messages, the decision events and the dead letters it produced; deliver
them with the four channel workers; then the HTTP API: a user registered, a notification sent and
clicked, opened and unsubscribed from through it (``demo_api``); last, the analytics sink writes the
events to Parquet and the report prints the funnel per channel and draws its chart (``demo_analytics``).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter
from typing import Any

from notify_cli.demo_analytics import analytics
from notify_cli.demo_api import tour
from notify_cli.demo_delivery import deliver, describe, status_line
from notify_cli.demo_speed import speed_lines
from notify_cli.demo_sre import lag_lines
from notify_cli.router_cmd import build_router
from notify_core import stack
from notify_core.codec import CHANNEL_MESSAGE, DEAD_LETTER, EVENT, REQUEST, default_codec
from notify_core.db.connect import connect, make_pool
from notify_core.db.migrate import migrate
from notify_core.kafka_clients import make_admin, make_producer
from notify_core.records import end_offsets, read_records
from notify_core.request_model import NotificationRequest
from notify_core.settings import Settings
from notify_core.stack.prometheus import url as prometheus_url
from notify_core.topic_admin import apply_topics
from notify_core.topics import Channel, topic_names, topic_specs
from notify_core.userdata.repository import UserDataRepository
from notify_core.userdata.seed import seed_demo
from producer.client import NotificationClient
from producer.exceptions import InvalidRequestError


def register(commands: Any) -> None:
    parser = commands.add_parser("demo", help="the pipeline end to end on the local stack, with a summary")
    parser.set_defaults(handler=run)


def _requests(run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(what it shows, the request) for this run; idempotency keys are unique per run."""
    welcome = {"template_id": "welcome", "service": "accounts", "category": "account"}
    return [
        (
            "Ada: 2 iOS devices + 1 Android + e-mail + SMS",
            {
                **welcome,
                "user_id": "demo-ada",
                "channels": ["ios", "android", "email", "sms"],
                "params": {"name": "Ada"},
                "idempotency_key": f"{run_id}-ada",
            },
        ),
        (
            "Grace (fr): e-mail + SMS, rendered in French",
            {
                **welcome,
                "user_id": "demo-grace",
                "channels": ["email", "sms"],
                "params": {"name": "Grace"},
                "idempotency_key": f"{run_id}-grace",
            },
        ),
        (
            "Ada, marketing by SMS: she opted out",
            {
                "template_id": "order-shipped",
                "service": "shop",
                "category": "marketing",
                "user_id": "demo-ada",
                "channels": ["sms"],
                "params": {"order": "A-1"},
            },
        ),
        (
            "Ada again with the same idempotency key: a duplicate",
            {
                **welcome,
                "user_id": "demo-ada",
                "channels": ["ios", "android", "email", "sms"],
                "params": {"name": "Ada"},
                "idempotency_key": f"{run_id}-ada",
            },
        ),
        (
            "Linus: security alert (mandatory, critical: ignores his quiet hours)",
            {
                "template_id": "security-alert",
                "service": "auth",
                "category": "security",
                "priority": "critical",
                "user_id": "demo-linus",
                "channels": ["android"],
                "params": {"place": "Helsinki"},
            },
        ),
        (
            "Grace with a parameter missing: dead-lettered, the router moves on",
            {**welcome, "user_id": "demo-grace", "channels": ["email"], "params": {}},
        ),
    ]


def _bypass_the_sdk(settings: Settings) -> None:
    """Records that never met the SDK's validation, produced straight onto the requests topic: the
    router refuses them by the same rules and keeps routing."""
    valid = {"template_id": "welcome", "service": "accounts", "category": "account", "user_id": "demo-ada"}
    nul_user = {**NotificationRequest.parse(valid).to_avro(), "user_id": "demo-\x00ada"}
    hostile = [
        ("a NUL in user_id (PostgreSQL would refuse it)", default_codec().encode(REQUEST, nul_user)),
        ("bytes that are no Avro record", b"\xc3\x01 not a record"),
    ]
    producer = make_producer(settings)
    for _, value in hostile:
        producer.produce(topic_names(settings).requests, key=b"demo-hostile", value=value)
    producer.flush(30)
    for label, _ in hostile:
        print(f"   produced around the SDK: {label}")


def run(_args: argparse.Namespace, settings: Settings) -> int:
    names = topic_names(settings)
    codec = default_codec()
    print("== 1. local stack")
    for line in stack.up(settings, with_monitoring=True):
        print(f"   {line}")
    print("== 2. topics")
    for line in apply_topics(make_admin(settings), topic_specs(settings)):
        print(f"   {line}")

    print("== 3. user database: migrations and demo users")
    with connect(settings) as conn:
        applied = migrate(conn)
        conn.commit()
    print(f"   {len(applied)} migration(s) applied" if applied else "   schema up to date")
    pool = make_pool(settings, max_size=1)
    seed_demo(UserDataRepository(pool))
    pool.close()
    print(
        "   ada (en: 2 iOS, 1 Android, e-mail, phone), grace (fr: e-mail, phone),"
        " linus (Android, quiet 22-07)"
    )

    outputs = [names.channel(c) for c in Channel] + [names.events, names.requests_dlq]
    since = {topic: end_offsets(settings, topic) for topic in outputs}

    print("== 4. publish with the SDK")
    run_id = uuid.uuid4().hex[:6]
    sent: dict[str, str] = {}
    with NotificationClient(settings) as client:
        started = time.perf_counter()
        for label, request in _requests(run_id):
            result = client.send(request)
            sent[result.notification_id] = label
            print(
                f"   {label}\n     -> {result.notification_id}"
                f" at {result.topic}[{result.partition}]@{result.offset}"
            )
        elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            client.send(
                {
                    "user_id": "",
                    "template_id": "welcome",
                    "service": "Demo!",
                    "category": "account",
                    "channels": ["pager"],
                }
            )
        except InvalidRequestError as exc:
            print(f"   a bad request is refused before it reaches Kafka:\n     {exc}")
    _bypass_the_sdk(settings)

    print("== 5. route (router in burst mode: stops once idle)")
    stats = build_router(settings).run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120)
    print(
        f"   {stats.records} request(s) in {stats.batches} transaction(s); decisions {dict(stats.decisions)}"
    )

    print("== 6. what came out (read_committed)")
    per_channel: Counter[str] = Counter()
    routed: list[dict[str, Any]] = []
    for channel in Channel:
        for record in read_records(
            settings,
            names.channel(channel),
            max_records=10_000,
            timeout_s=30,
            since=since[names.channel(channel)],
        ):
            message = codec.decode(record.value or b"", CHANNEL_MESSAGE)
            if message["notification_id"] not in sent:
                continue
            per_channel[channel.value] += 1
            routed.append(message)
            content = message["title"] or message["email_subject"] or message["sms_text"]
            print(
                f"   {channel.value:8} {message['user_id']:11} {message['locale']:3} "
                f"{message['target'][:24]:24} {content!r}"
            )
    reasons: Counter[str] = Counter()
    for record in read_records(
        settings, names.events, max_records=10_000, timeout_s=30, since=since[names.events]
    ):
        event = codec.decode(record.value or b"", EVENT)
        if event["notification_id"] in sent and event["event_type"] == "SUPPRESSED":
            scope = (event["channel"] or "whole request").lower()
            reasons[f"{scope}: {event['reason']}"] += 1
    for reason, count in sorted(reasons.items()):
        print(f"   suppressed {count} x {reason}")
    dead = [
        codec.decode(r.value or b"", DEAD_LETTER)
        for r in read_records(
            settings, names.requests_dlq, max_records=10_000, timeout_s=30, since=since[names.requests_dlq]
        )
    ]
    for letter in dead:
        print(f"   dead letter: {letter['error_type']}: {letter['error_message']}")

    print("   consumer lag before delivery (notify lag):")
    for line in lag_lines(settings):
        print(f"     {line}")

    print("== 7. deliver: one worker per channel against its sandbox on 127.0.0.1")
    print(
        "   injected: Ada's 2nd iPhone is Unregistered; Grace's SMS is throttled once;"
        " Ada's mail is greylisted once"
    )
    delivered = deliver(settings, settings.cache_dir / "demo", [m["delivery_id"] for m in routed])
    for message in routed:
        row = delivered.log.get(message["delivery_id"])
        print(
            f"   {message['channel'].lower():8} {message['user_id']:11} {message['target'][:24]:24}"
            f" {status_line(row)}"
        )
    for channel, received in delivered.received.items():
        done = delivered.stats[channel]
        print(
            f"   {channel.value:8} sandbox answered: {describe(received)};"
            f" worker: {done.sent} sent, {done.retried} retried, {done.dead_lettered} dead-lettered,"
            f" {done.deactivated} target(s) deactivated"
        )
    outcomes: Counter[str] = Counter()
    for record in read_records(
        settings, names.events, max_records=100_000, timeout_s=30, since=since[names.events]
    ):
        event = codec.decode(record.value or b"", EVENT)
        if event["notification_id"] in sent:
            outcomes[event["event_type"]] += 1
    print(f"   events on {names.events} for this run: {dict(sorted(outcomes.items()))}")

    print("== 8. the HTTP API: register, send, status, click, open, unsubscribe")
    api_ok = tour(settings, settings.cache_dir / "demo-api")

    print("== 9. analytics: the sink writes the events to Parquet, the report reads them (DuckDB)")
    # What the API tour sent last (the offer that still went by push) is delivered first: the sink
    # gets every event of the run, and step 10 shows every group drained.
    build_router(settings).run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120)
    drained = deliver(settings, settings.cache_dir / "demo", [])
    print(f"   the rest of the API tour delivered: {sum(s.sent for s in drained.stats.values())} more")
    analytics_ok = analytics(settings)

    print("== 10. SRE view: every group's lag after the run (notify lag)")
    for line in lag_lines(settings):
        print(f"   {line}")
    print(
        f"   Prometheus: {prometheus_url(settings)} (alerts: /alerts), scraping the lag exporter on"
        f" :{settings.lag_exporter_port} and every router, worker, sink and API process that runs"
    )

    print("== 11. speed: each stage against its own baseline (the committed make bench table)")
    for line in speed_lines():
        print(f"   {line}")

    print("== summary")
    statuses = Counter(row[0] for row in delivered.log.values())
    print(
        f"   published {len(sent)} requests in {elapsed_ms:.1f} ms (acks=all);"
        f" the router produced {len(routed)}"
        f" channel messages {dict(per_channel)}, {sum(reasons.values())} suppression(s),"
        f" {len(dead)} dead letter(s); the workers: {dict(statuses)}"
    )
    print("   stop the stack with: make down")
    expected = {"ios": 2, "android": 2, "email": 2, "sms": 2}
    delivered_ok = statuses == Counter({"sent": len(routed) - 1, "dead_lettered": 1})
    reasons_dead = sorted(letter["error_type"] for letter in dead)
    dead_ok = reasons_dead == ["decode_error", "invalid_request", "missing_param"]
    return 0 if dict(per_channel) == expected and dead_ok and delivered_ok and api_ok and analytics_ok else 1

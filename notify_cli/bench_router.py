"""``notify bench router``: router throughput with warm caches, next to a raw transactional pass-through
that writes the same fan-out.

Both run in this process against the same broker in the same run, on throw-away topics and a
throw-away database schema. The router goes first; every record it wrote (channel messages and
events, with their headers) is then read back, and the baseline consumes the same requests in a group
of its own and, inside the same kind of Kafka transaction (consume, produce, send offsets, commit),
writes for each request as many records of the same sizes as the router did (its own output bytes,
replayed in order). The ratio is therefore what routing itself costs: decoding, PostgreSQL lookups
and state writes, rendering, encoding, events; not the broker's work on a bigger fan-out.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import confluent_kafka

from consumers.router.app import Router
from notify_cli.scratch import scratch
from notify_core.db.connect import connect, make_pool
from notify_core.instruments import Instruments
from notify_core.kafka_clients import make_consumer, make_producer, produce_waiting
from notify_core.settings import Settings
from notify_core.stats import summary_ms
from notify_core.topics import Channel, topic_names
from notify_core.tracing import setup_tracing
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository
from producer.client import NotificationClient

GOAL_ROUTER_VS_PASSTHROUGH = 0.70
Headers = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None
Output = tuple[str, bytes | None, bytes | None, Headers]

# A transactional e-mail and push as a shop sends them: a few parameters, a conditional, a loop.
_HTML = (
    "<html><body><h1>Hi {{ name }},</h1><p>Your order <b>{{ order }}</b> has shipped.</p>"
    "{% if items > 1 %}<p>{{ items }} items, {{ total }} EUR in all.</p>{% else %}<p>One item.</p>{% endif %}"
    "<ul>{% for step in ['packed', 'shipped', 'out for delivery'] %}<li>{{ step }}</li>{% endfor %}</ul>"
    "<p>Track it at https://shop.example.com/orders/{{ order }}</p></body></html>"
)


def register_kind(kinds: Any) -> None:
    parser = kinds.add_parser(
        "router", help="router requests/s vs an equal fan-out transactional pass-through"
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/router.json"))
    parser.set_defaults(handler=run)


def _seed(repo: UserDataRepository, users: int) -> None:
    for channel in (Channel.IOS, Channel.EMAIL):
        repo.put_template(
            Template(
                "bench",
                channel,
                "en",
                1,
                title="Order {{ order }} shipped",
                body="Hi {{ name }}, {{ items }} items ({{ total }} EUR) are on their way",
                email_subject="Your order {{ order }} has shipped",
                email_html=_HTML,
                email_text="Hi {{ name }}, your order {{ order }} ({{ items }} items) has shipped.",
            )
        )
    zones = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo")
    for u in range(users):
        repo.upsert_user(f"user-{u}", "en", zones[u % len(zones)])
        repo.add_device(f"user-{u}", "ios", f"{u:064x}", "app")
        repo.add_email(f"user-{u}", f"user-{u}@example.com")


def _requests(count: int, users: int) -> list[dict[str, Any]]:
    return [
        {
            "user_id": f"user-{i % users}",
            "template_id": "bench",
            "service": "shop",
            "category": "account",
            "channels": ["ios", "email"],
            "params": {
                "order": f"A{i:07d}",
                "name": f"Customer {i % users}",
                "items": 1 + i % 4,
                "total": 42.5,
            },
        }
        for i in range(count)
    ]


def _read_outputs(settings: Settings, topics: list[str], idle_s: float = 3.0) -> list[Output]:
    """Every committed record the router wrote, with its headers."""
    consumer = make_consumer(settings, f"bench-outputs-{uuid.uuid4().hex[:6]}")
    consumer.subscribe(topics)
    outputs: list[Output] = []
    last = time.monotonic()
    while time.monotonic() - last < idle_s:
        batch = [m for m in consumer.consume(1000, timeout=0.5) if m.error() is None]
        if batch:
            last = time.monotonic()
            outputs.extend((m.topic() or "", m.key(), m.value(), m.headers()) for m in batch)
    consumer.close()
    return outputs


def _passthrough(
    settings: Settings, source: str, outputs: list[Output], count: int
) -> tuple[float, list[float]]:
    """Consume ``count`` requests; write ``len(outputs) / count`` of the router's records for each."""
    consumer = make_consumer(settings, f"bench-pass-{uuid.uuid4().hex[:6]}")
    producer = make_producer(settings, transactional_id=f"bench-pass-{uuid.uuid4().hex[:6]}")
    producer.init_transactions(30)
    consumer.subscribe([source])
    done, written, batches = 0, 0, []
    started: float | None = None
    while done < count:
        messages = [m for m in consumer.consume(settings.router_batch_size, timeout=1.0) if m.error() is None]
        if not messages:
            continue
        began = time.perf_counter()
        started = started or began
        producer.begin_transaction()
        offsets: dict[int, int] = {}
        for m in messages:
            done += 1
            upto = len(outputs) * done // count  # the router's outputs, spread evenly over its inputs
            for topic, key, value, headers in outputs[written:upto]:
                produce_waiting(producer, topic, value, key=key, headers=headers)
            written = upto
            offsets[m.partition() or 0] = max(offsets.get(m.partition() or 0, 0), (m.offset() or 0) + 1)
        producer.send_offsets_to_transaction(
            [confluent_kafka.TopicPartition(source, p, o) for p, o in offsets.items()],
            consumer.consumer_group_metadata(),
        )
        producer.commit_transaction()
        batches.append(time.perf_counter() - began)
    consumer.close()
    return time.perf_counter() - (started or 0.0), batches


def measure(settings: Settings, count: int, users: int) -> dict[str, Any]:
    setup_tracing(settings, "notify-bench-router")  # as `notify router run` does (NOTIFY_TRACING_ENABLED)
    with scratch(settings, router_group=f"bench-router-{uuid.uuid4().hex[:6]}") as (bench, schema):
        names = topic_names(bench)
        pool = make_pool(bench, schema=schema, min_size=1, max_size=2)
        repo = UserDataRepository(pool, cache_size=bench.user_cache_size, cache_ttl_s=3600)
        _seed(repo, users)
        with NotificationClient(bench) as client:
            client.send_batch(_requests(count, users))
        # Warm caches: contexts, categories and templates are read once before the clock starts.
        repo.get_contexts([f"user-{u}" for u in range(users)])
        repo.get_category("account")
        repo.get_templates("bench")
        # Recording as the process would (NOTIFY_METRICS_ENABLED), so both settings can be compared.
        instruments = Instruments.from_settings(bench, "notify-bench-router")
        router = Router(bench, lambda: connect(bench, schema=schema), repo, instruments=instruments)
        cpu_before = time.process_time()  # this process's CPU, librdkafka's threads included
        stats = router.run(stop_when_idle=True, idle_s=3.0)
        router_cpu_s = time.process_time() - cpu_before
        pool.close()
        if stats.first_batch_at is None or stats.last_batch_at is None or stats.records != count:
            raise RuntimeError(f"router processed {stats.records} of {count} requests")
        outputs = _read_outputs(
            bench, [names.channel(Channel.IOS), names.channel(Channel.EMAIL), names.events]
        )
        raw_s, raw_batches = _passthrough(bench, names.requests, outputs, count)
    router_s = stats.last_batch_at - stats.first_batch_at
    sizes = [len(v or b"") for _, _, v, _ in outputs]
    ratio = raw_s / router_s
    return {
        "benchmark": "router",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "requests": count,
        "users": users,
        "batch_size": bench.router_batch_size,
        "fan_out": {
            "records_per_request": round(len(outputs) / count, 3),
            "avg_record_bytes": round(sum(sizes) / max(len(sizes), 1), 1),
        },
        "metrics_enabled": bench.metrics_enabled,
        "tracing_enabled": bench.tracing_enabled,
        "router": {
            "seconds": round(router_s, 3),
            "requests_per_s": round(count / router_s),
            # Steadier than the rate on a shared machine: what each request cost, idle wait included.
            "cpu_us_per_request": round(router_cpu_s / count * 1e6),
            "batch_latency": summary_ms(stats.batch_seconds),
            "decisions": dict(stats.decisions),
        },
        "equal_fan_out_passthrough": {
            "seconds": round(raw_s, 3),
            "requests_per_s": round(count / raw_s),
            "batch_latency": summary_ms(raw_batches),
        },
        "router_vs_passthrough": round(ratio, 3),
        "goals": {
            "router_vs_passthrough_min": GOAL_ROUTER_VS_PASSTHROUGH,
            "met": ratio >= GOAL_ROUTER_VS_PASSTHROUGH,
        },
    }


def report(figures: dict[str, Any]) -> list[str]:
    r, p = figures["router"], figures["equal_fan_out_passthrough"]
    return [
        f"router benchmark ({figures['requests']} requests, {figures['users']} users, warm caches,"
        f" {figures['fan_out']['records_per_request']} records of"
        f" {figures['fan_out']['avg_record_bytes']:.0f} B out per request)",
        f"  router                  : {r['requests_per_s']:>8,} req/s  ({r['seconds']:.2f} s,"
        f" {r['cpu_us_per_request']} µs CPU a request)",
        f"  equal fan-out pass-thru : {p['requests_per_s']:>8,} req/s  ({p['seconds']:.2f} s)",
        f"  router / pass-through   : {figures['router_vs_passthrough']:.2f}",
        f"  router batch p50/p99    : {r['batch_latency']['p50_ms']} / {r['batch_latency']['p99_ms']} ms"
        f" (batch of {figures['batch_size']})",
    ]


def run(args: argparse.Namespace, settings: Settings) -> int:
    figures = measure(settings, args.count, args.users)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(report(figures)) + f"\n  -> {args.out}")
    return 0

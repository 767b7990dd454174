"""``notify bench router``: router throughput with warm caches, next to a raw consume->produce pass-through.

Both run in this process against the same broker in the same run, on throw-away topics and a
throw-away database schema. The pass-through copies each request's bytes to a channel topic inside
the same kind of Kafka transaction (consume, produce, send offsets, commit), so the difference is
what routing costs: decoding, PostgreSQL lookups and state writes, rendering, encoding, events.
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
from notify_core.kafka_clients import make_consumer, make_producer
from notify_core.settings import Settings
from notify_core.stats import summary_ms
from notify_core.topics import Channel, topic_names
from notify_core.tracing import setup_tracing
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository
from producer.client import NotificationClient


def register_kind(kinds: Any) -> None:
    parser = kinds.add_parser("router", help="router requests/s vs a raw transactional pass-through")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/router.json"))
    parser.set_defaults(handler=run)


def _passthrough(settings: Settings, source: str, sink: str, count: int) -> tuple[float, list[float]]:
    consumer = make_consumer(settings, f"bench-pass-{uuid.uuid4().hex[:6]}")
    producer = make_producer(settings, transactional_id=f"bench-pass-{uuid.uuid4().hex[:6]}")
    producer.init_transactions(30)
    consumer.subscribe([source])
    done, batches = 0, []
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
            producer.produce(sink, value=m.value(), key=m.key())
            offsets[m.partition() or 0] = max(offsets.get(m.partition() or 0, 0), (m.offset() or 0) + 1)
        producer.send_offsets_to_transaction(
            [confluent_kafka.TopicPartition(source, p, o) for p, o in offsets.items()],
            consumer.consumer_group_metadata(),
        )
        producer.commit_transaction()
        batches.append(time.perf_counter() - began)
        done += len(messages)
    consumer.close()
    return time.perf_counter() - (started or 0.0), batches


def run(args: argparse.Namespace, settings: Settings) -> int:
    setup_tracing(settings, "notify-bench-router")  # as `notify router run` does (NOTIFY_TRACING_ENABLED)
    with scratch(settings, router_group=f"bench-router-{uuid.uuid4().hex[:6]}") as (bench, schema):
        names = topic_names(bench)
        pool = make_pool(bench, schema=schema, min_size=1, max_size=2)
        repo = UserDataRepository(pool, cache_size=bench.user_cache_size, cache_ttl_s=3600)
        for channel in (Channel.IOS, Channel.EMAIL):
            repo.put_template(
                Template(
                    "bench",
                    channel,
                    "en",
                    1,
                    title="Order {{ order }}",
                    body="Your order {{ order }} has shipped",
                    email_subject="Order {{ order }}",
                    email_html="<p>Order {{ order }} shipped</p>",
                    email_text="Order {{ order }} shipped",
                )
            )
        for u in range(args.users):
            repo.upsert_user(f"user-{u}", "en", "UTC")
            repo.add_device(f"user-{u}", "ios", f"token-{u}", "app")
            repo.add_email(f"user-{u}", f"user-{u}@example.com")
        with NotificationClient(bench) as client:
            client.send_batch(
                [
                    {
                        "user_id": f"user-{i % args.users}",
                        "template_id": "bench",
                        "service": "bench",
                        "category": "account",
                        "channels": ["ios", "email"],
                        "params": {"order": f"A{i:07d}"},
                    }
                    for i in range(args.count)
                ]
            )
        # Warm caches: contexts, categories and templates are read once before the clock starts.
        repo.get_contexts([f"user-{u}" for u in range(args.users)])
        repo.get_category("account")
        repo.get_templates("bench")

        raw_s, raw_batches = _passthrough(bench, names.requests, names.channel(Channel.SMS), args.count)
        # Recording as the process would (NOTIFY_METRICS_ENABLED), so both settings can be compared.
        instruments = Instruments.from_settings(bench, "notify-bench-router")
        router = Router(bench, lambda: connect(bench, schema=schema), repo, instruments=instruments)
        stats = router.run(stop_when_idle=True, idle_s=3.0)
        pool.close()
    if stats.first_batch_at is None or stats.last_batch_at is None or stats.records != args.count:
        raise RuntimeError(f"router processed {stats.records} of {args.count} requests")
    router_s = stats.last_batch_at - stats.first_batch_at
    figures: dict[str, Any] = {
        "benchmark": "router",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "requests": args.count,
        "users": args.users,
        "batch_size": bench.router_batch_size,
        "outputs_per_request": "2 channel messages + 2 events",
        "metrics_enabled": bench.metrics_enabled,
        "tracing_enabled": bench.tracing_enabled,
        "router": {
            "seconds": round(router_s, 3),
            "requests_per_s": round(args.count / router_s),
            "batch_latency": summary_ms(stats.batch_seconds),
            "decisions": dict(stats.decisions),
        },
        "raw_passthrough_baseline": {
            "seconds": round(raw_s, 3),
            "records_per_s": round(args.count / raw_s),
            "batch_latency": summary_ms(raw_batches),
        },
    }
    figures["router_vs_raw"] = round(raw_s / router_s, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"router benchmark ({args.count} requests, {args.users} users, warm caches) -> {args.out}")
    print(f"  router               : {figures['router']['requests_per_s']:>8,} req/s  ({router_s:.2f} s)")
    print(
        f"  raw txn pass-through : {figures['raw_passthrough_baseline']['records_per_s']:>8,} rec/s  "
        f"({raw_s:.2f} s)"
    )
    print(
        f"  router batch p50/p99 : {figures['router']['batch_latency']['p50_ms']} / "
        f"{figures['router']['batch_latency']['p99_ms']} ms (batch of {bench.router_batch_size})"
    )
    return 0

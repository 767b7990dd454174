"""``notify bench produce``: SDK throughput and latency next to a raw Kafka baseline, same run.

The baseline is a bare confluent-kafka producer with the same settings sending the same encoded
bytes, so the difference is what the SDK costs (validation, encoding, futures). Runs on throw-away
topics (a unique prefix) that it deletes afterwards, and writes its figures to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notify_cli import bench_api, bench_delivery, bench_observability, bench_router, bench_sink
from notify_core.codec import REQUEST, default_codec
from notify_core.kafka_clients import make_admin, make_producer
from notify_core.settings import Settings
from notify_core.stats import summary_ms
from notify_core.topic_admin import apply_topics
from notify_core.topics import topic_names, topic_specs
from producer.client import NotificationClient
from producer.models import NotificationRequest


def register(commands: Any) -> None:
    parser = commands.add_parser("bench", help="benchmarks against the real broker")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    produce = kinds.add_parser("produce", help="SDK batch throughput + send latency vs raw producer")
    produce.add_argument("--count", type=int, default=100_000, help="requests for the throughput pass")
    produce.add_argument("--latency-count", type=int, default=1_000, help="sequential sends for latency")
    produce.add_argument("--out", type=Path, default=Path("bench-results/producer.json"))
    produce.set_defaults(handler=run_produce)
    bench_router.register_kind(kinds)
    bench_delivery.register_kind(kinds)
    bench_api.register_kind(kinds)
    bench_sink.register_kind(kinds)
    bench_observability.register_kind(kinds)


def sample_request(i: int) -> dict[str, Any]:
    return {
        "user_id": f"user-{i % 10_000}",
        "template_id": "order-shipped",
        "service": "orders",
        "category": "transactional",
        "channels": ["ios", "email"],
        "params": {"order_id": f"A{i:08d}", "items": 3, "total": 42.5},
    }


def _raw_throughput(settings: Settings, topic: str, payloads: list[tuple[bytes, bytes]]) -> float:
    producer = make_producer(settings)
    started = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    remaining = producer.flush(60)
    elapsed = time.perf_counter() - started
    if remaining:
        raise RuntimeError(f"raw baseline: {remaining} messages not acknowledged")
    return elapsed


def _raw_latencies(settings: Settings, topic: str, key: bytes, value: bytes, count: int) -> list[float]:
    producer = make_producer(settings)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        producer.produce(topic, value=value, key=key)
        producer.flush(30)
        samples.append(time.perf_counter() - started)
    return samples


def run_produce(args: argparse.Namespace, settings: Settings) -> int:
    bench_settings = settings.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}"})
    admin = make_admin(bench_settings)
    specs = [s for s in topic_specs(bench_settings) if s.name == topic_names(bench_settings).requests]
    apply_topics(admin, specs)
    topic = specs[0].name
    try:
        codec = default_codec()
        requests = [sample_request(i) for i in range(args.count)]
        encoded = [
            (r["user_id"].encode(), codec.encode(REQUEST, NotificationRequest.parse(r).to_avro()))
            for r in requests
        ]
        raw_s = _raw_throughput(bench_settings, topic, encoded)
        raw_lat = _raw_latencies(bench_settings, topic, encoded[0][0], encoded[0][1], args.latency_count)
        with NotificationClient(bench_settings) as client:
            started = time.perf_counter()
            client.send_batch(requests)
            sdk_s = time.perf_counter() - started
            sdk_lat = []
            for i in range(args.latency_count):
                one = time.perf_counter()
                client.send(requests[i])
                sdk_lat.append(time.perf_counter() - one)
    finally:
        admin.delete_topics([s.name for s in specs])
    avg_bytes = sum(len(v) for _, v in encoded) / len(encoded)
    figures = {
        "benchmark": "producer",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "bootstrap": settings.kafka_bootstrap,
        "count": args.count,
        "avg_record_bytes": round(avg_bytes, 1),
        "sdk_batch": {"seconds": round(sdk_s, 3), "requests_per_s": round(args.count / sdk_s)},
        "raw_kafka_baseline": {"seconds": round(raw_s, 3), "records_per_s": round(args.count / raw_s)},
        "sdk_vs_raw": round(raw_s / sdk_s, 3),
        "send_latency": {
            "count": args.latency_count,
            "sdk": summary_ms(sdk_lat),
            "raw_kafka": summary_ms(raw_lat),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"producer benchmark ({args.count} requests, {avg_bytes:.0f} B each) -> {args.out}")
    print(f"  SDK send_batch : {figures['sdk_batch']['requests_per_s']:>9,} req/s  ({sdk_s:.2f} s)")
    print(f"  raw Kafka      : {figures['raw_kafka_baseline']['records_per_s']:>9,} rec/s  ({raw_s:.2f} s)")
    print(f"  SDK / raw      : {figures['sdk_vs_raw']:.2f}")
    for label, lat in (
        ("SDK send", figures["send_latency"]["sdk"]),
        ("raw produce+flush", figures["send_latency"]["raw_kafka"]),
    ):
        print(f"  {label:<18}: p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  p99 {lat['p99_ms']} ms")
    return 0

"""``notify bench produce``: the SDK's ingest next to three baselines measured in the same run.

* ``fastavro encode alone``: the same requests turned into the same Avro bytes with nothing else (no
  validation, no Kafka): the ceiling for a Python producer of this schema, which the SDK must reach
  40% of (issue 13).
* ``raw confluent-kafka``: a bare producer with the SDK's settings sending those pre-encoded bytes.
* ``ProducerPerformance``: Kafka's own tool (the ``kafka-tools`` jar) at the same record size and the
  SDK's producer settings (``acks=all``, idempotence, ``linger.ms``, lz4), so the broker's ceiling
  on this machine is in the table too. Its payloads are random letters, ours Avro: they compress
  differently, which the note says.

Runs on throw-away topics (a unique prefix) that it deletes afterwards.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from notify_core.codec import REQUEST, default_codec
from notify_core.kafka_clients import make_admin, make_producer, produce_waiting
from notify_core.settings import Settings
from notify_core.stack.kafka_tools import PRODUCER_PERFORMANCE, run_tool
from notify_core.stats import summary_ms
from notify_core.topic_admin import apply_topics
from notify_core.topics import topic_names, topic_specs
from producer.client import NotificationClient
from producer.models import NotificationRequest

# Goals of issue 13 for the batch API, on one core.
GOAL_SDK_PER_S = 50_000
GOAL_SDK_VS_ENCODE = 0.40

_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


def parse_producer_performance(stdout: str) -> dict[str, float]:
    """The final summary line of ``ProducerPerformance`` as figures; ``ValueError`` when absent."""
    found = list(_SUMMARY.finditer(stdout))
    if not found:
        raise ValueError(f"no ProducerPerformance summary in its output: {stdout[-500:]!r}")
    last = found[-1]
    return {
        "records": int(last["records"]),
        "records_per_s": round(float(last["rate"])),
        "mb_per_s": float(last["mb"]),
        "avg_ms": float(last["avg"]),
        "max_ms": float(last["max"]),
        "p50_ms": float(last["p50"]),
        "p95_ms": float(last["p95"]),
        "p99_ms": float(last["p99"]),
    }


def sample_request(i: int) -> dict[str, Any]:
    return {
        "user_id": f"user-{i % 10_000}",
        "template_id": "order-shipped",
        "service": "orders",
        "category": "transactional",
        "channels": ["ios", "email"],
        "params": {"order_id": f"A{i:08d}", "items": 3, "total": 42.5},
    }


def _producer_performance(settings: Settings, topic: str, count: int, record_bytes: int) -> dict[str, Any]:
    conf = settings.kafka_producer()
    props = [
        f"{key}={str(conf[key]).lower() if isinstance(conf[key], bool) else conf[key]}"
        for key in ("bootstrap.servers", "acks", "enable.idempotence", "linger.ms", "compression.type")
    ]
    args = ["--topic", topic, "--num-records", str(count), "--record-size", str(record_bytes)]
    args += ["--throughput", "-1", "--producer-props", *props]
    figures: dict[str, Any] = parse_producer_performance(run_tool(settings, PRODUCER_PERFORMANCE, args))
    figures["record_bytes"] = record_bytes
    figures["producer_props"] = props
    return figures


def _raw_throughput(settings: Settings, topic: str, payloads: list[tuple[bytes, bytes]]) -> float:
    producer = make_producer(settings)
    producer.produce(topic, value=payloads[0][1], key=payloads[0][0])  # connected, with a producer id
    producer.flush(30)
    started = time.perf_counter()
    for key, value in payloads:
        produce_waiting(producer, topic, value, key=key)
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


def _encode_alone(requests: list[dict[str, Any]]) -> tuple[float, list[tuple[bytes, bytes]]]:
    """The same Avro bytes the SDK would send, built with fastavro and nothing else."""
    codec = default_codec()
    records = [NotificationRequest.parse(r).to_avro() for r in requests]  # outside the clock
    started = time.perf_counter()
    encoded = [(r["user_id"].encode(), codec.encode(REQUEST, r)) for r in records]
    return time.perf_counter() - started, encoded


def measure(settings: Settings, count: int, latency_count: int) -> dict[str, Any]:
    if count < 1 or not 1 <= latency_count <= count:
        raise ValueError("--count must be at least 1 and --latency-count between 1 and --count")
    bench = settings.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}"})
    admin = make_admin(bench)
    specs = [s for s in topic_specs(bench) if s.name == topic_names(bench).requests]
    apply_topics(admin, specs)
    topic = specs[0].name
    try:
        requests = [sample_request(i) for i in range(count)]
        encode_s, encoded = _encode_alone(requests)
        avg_bytes = sum(len(v) for _, v in encoded) / len(encoded)
        raw_s = _raw_throughput(bench, topic, encoded)
        raw_lat = _raw_latencies(bench, topic, encoded[0][0], encoded[0][1], latency_count)
        java = _producer_performance(bench, topic, count, round(avg_bytes))
        with NotificationClient(bench) as client:
            client.send(requests[0])  # connected, with a producer id, like the raw producer
            started = time.perf_counter()
            client.send_batch(requests)
            sdk_s = time.perf_counter() - started
            sdk_lat = []
            for i in range(latency_count):
                one = time.perf_counter()
                client.send(requests[i])
                sdk_lat.append(time.perf_counter() - one)
    finally:
        admin.delete_topics([s.name for s in specs])
    sdk_rate = count / sdk_s
    encode_rate = count / encode_s
    return {
        "benchmark": "produce",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "count": count,
        "avg_record_bytes": round(avg_bytes, 1),
        "sdk_batch": {"seconds": round(sdk_s, 3), "requests_per_s": round(sdk_rate)},
        "encode_alone": {"seconds": round(encode_s, 3), "records_per_s": round(encode_rate)},
        "raw_kafka": {"seconds": round(raw_s, 3), "records_per_s": round(count / raw_s)},
        "producer_performance": java,
        "sdk_vs_encode": round(sdk_rate / encode_rate, 3),
        "sdk_vs_raw": round(raw_s / sdk_s, 3),
        "sdk_vs_producer_performance": round(sdk_rate / java["records_per_s"], 3),
        "send_latency": {
            "count": latency_count,
            "sdk": summary_ms(sdk_lat),
            "raw_kafka": summary_ms(raw_lat),
        },
        "goals": {
            "sdk_per_s_min": GOAL_SDK_PER_S,
            "sdk_vs_encode_min": GOAL_SDK_VS_ENCODE,
            "met": sdk_rate >= GOAL_SDK_PER_S and sdk_rate / encode_rate >= GOAL_SDK_VS_ENCODE,
        },
    }


def report(figures: dict[str, Any]) -> list[str]:
    java = figures["producer_performance"]
    lines = [
        f"producer benchmark ({figures['count']} requests, {figures['avg_record_bytes']:.0f} B each)",
        f"  SDK send_batch        : {figures['sdk_batch']['requests_per_s']:>9,} req/s",
        f"  fastavro encode alone : {figures['encode_alone']['records_per_s']:>9,} rec/s",
        f"  raw confluent-kafka   : {figures['raw_kafka']['records_per_s']:>9,} rec/s",
        f"  ProducerPerformance   : {java['records_per_s']:>9,} rec/s (p99 {java['p99_ms']:g} ms)",
        f"  SDK / encode alone    : {figures['sdk_vs_encode']:.2f}   SDK / raw: {figures['sdk_vs_raw']:.2f}",
    ]
    for label, lat in (
        ("SDK send", figures["send_latency"]["sdk"]),
        ("raw", figures["send_latency"]["raw_kafka"]),
    ):
        lines.append(
            f"  {label:<9} latency   : p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  p99 {lat['p99_ms']} ms"
        )
    return lines

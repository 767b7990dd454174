"""``notify bench delivery``: deliveries/s and send latency of one worker against its sandbox process.

For each channel asked for: throw-away topics and database schema, N channel messages published,
then one in-process worker drains them in burst mode against the channel's sandbox, which runs in a
process of its own (``sandboxes.process``: it never shares the worker's GIL). Two baselines, in the
same run:

- ``bare_client``: the channel's own library (aioapns, aiohttp, boto3, aiosmtplib) sending the same
  N messages to the same sandbox process at the worker's concurrency (``notify_cli.bench_bare``):
  what the provider call alone costs, so ``worker_vs_bare`` is the share of it the worker achieves.
- ``raw_consume_baseline``: a plain consumer reading and committing the same N records from the same
  broker: what Kafka alone costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumers.delivery.delivery_log import DeliveryLog
from consumers.delivery.worker import Adapter, Worker
from notify_cli.bench_bare import BARE_CLIENTS, concurrency_for
from notify_cli.scratch import scratch
from notify_core.db.connect import make_async_pool
from notify_core.instruments import Instruments
from notify_core.kafka_clients import make_consumer
from notify_core.settings import Settings
from notify_core.stats import summary_ms
from notify_core.topics import Channel, topic_names
from notify_core.tracing import setup_tracing
from sandboxes.messages import channel_message, publish
from sandboxes.process import SandboxProcess, sandbox_process

UNPACED_SMS_PER_S = 1_000_000.0


def register_kind(kinds: Any) -> None:
    parser = kinds.add_parser(
        "delivery", help="one worker's deliveries/s and send latency vs a bare client and a raw consumer"
    )
    parser.add_argument("--channel", action="append", choices=[c.value for c in Channel], dest="channels")
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/delivery.json"))
    parser.set_defaults(handler=run)


TARGETS: dict[Channel, Callable[[int], str]] = {
    Channel.IOS: lambda i: f"{i:064x}",
    Channel.ANDROID: lambda i: f"fcm-token-{i:012d}",
    Channel.SMS: lambda i: f"+1555{i:07d}",
    Channel.EMAIL: lambda i: f"user-{i}@example.com",
}
BARE_LIBRARIES = {
    Channel.IOS: "aioapns",
    Channel.ANDROID: "aiohttp",
    Channel.SMS: "boto3",
    Channel.EMAIL: "aiosmtplib",
}


def _raw_consume(settings: Settings, topic: str, count: int) -> float:
    consumer = make_consumer(settings, f"bench-raw-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    done, started = 0, None
    deadline = time.monotonic() + 120
    while done < count and time.monotonic() < deadline:
        batch = [m for m in consumer.consume(500, timeout=1.0) if m.error() is None]
        if batch:
            started = started or time.perf_counter()
            done += len(batch)
            for m in batch:
                consumer.store_offsets(message=m)
            consumer.commit(asynchronous=False)
    consumer.close()
    return time.perf_counter() - (started or time.perf_counter())


async def _drain(settings: Settings, schema: str, channel: Channel, adapter: Adapter) -> dict[str, Any]:
    pool = await make_async_pool(settings, schema=schema, max_size=8)
    try:
        log = DeliveryLog(pool, owner="bench", lease=timedelta(seconds=60))
        group = f"{settings.topic_prefix}-{channel.value}"
        # Recording as the process would (NOTIFY_METRICS_ENABLED), so both settings can be compared.
        instruments = Instruments.from_settings(settings, f"notify-bench-{channel.value}")
        worker = Worker(
            settings, channel, adapter, log, provider="bench", group=group, instruments=instruments
        )
        stats = await worker.run(stop_when_idle=True, idle_s=2.0, max_runtime_s=600)
    finally:
        await pool.close()
    seconds = (stats.last_done_at or 0.0) - (stats.first_send_at or 0.0)
    return {
        "sent": stats.sent,
        "seconds": round(seconds, 3),
        "deliveries_per_s": round(stats.sent / seconds) if seconds > 0 else None,
        "send_latency": summary_ms(stats.send_seconds),
    }


def _per_s(count: int, seconds: float) -> int | None:
    return round(count / seconds) if seconds > 0 else None


def _received(box: SandboxProcess, expected: int, timeout_s: float = 3.0) -> int:
    """The sandbox's receipt count, once it reaches ``expected`` (its writer flushes every ~0.2 s)."""
    deadline = time.monotonic() + timeout_s
    while (seen := box.count()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return seen


def _measure_channel(settings: Settings, channel: Channel, count: int, workdir: Path) -> dict[str, Any]:
    """One channel: the worker, then the bare client, against one sandbox process; and the raw consumer."""
    with scratch(settings) as (bench, schema), sandbox_process(channel, workdir) as box:
        target = TARGETS[channel]
        publish(
            bench,
            channel,
            (channel_message(channel, target(i), user_id=f"user-{i % 500}") for i in range(count)),
        )
        raw_s = _raw_consume(bench, topic_names(bench).channel(channel), count)
        figures = asyncio.run(_drain(bench, schema, channel, box.make_adapter()))
        concurrency = concurrency_for(channel, bench.delivery_max_in_flight)
        bare_s = asyncio.run(BARE_CLIENTS[channel](box, count, concurrency))
        received = _received(box, 2 * count)
    figures["provider"] = box.provider
    figures["sandbox_pid"] = box.pid
    figures["sandbox_received"] = received  # the worker's sends and the bare client's, per the sandbox
    bare_per_s = _per_s(count, bare_s)
    figures["bare_client"] = {
        "library": BARE_LIBRARIES[channel],
        "sent": count,
        "concurrency": concurrency,
        "seconds": round(bare_s, 3),
        "deliveries_per_s": bare_per_s,
    }
    worker_per_s = figures["deliveries_per_s"]
    figures["worker_vs_bare"] = round(worker_per_s / bare_per_s, 3) if worker_per_s and bare_per_s else None
    figures["raw_consume_baseline"] = {"seconds": round(raw_s, 3), "records_per_s": _per_s(count, raw_s)}
    return figures


def measure(settings: Settings, channels: list[Channel], count: int) -> dict[str, Any]:
    """The figures of one run (per channel: the worker's, its bare client's, the raw consumer's)."""
    # The worker against its sandbox, not an SNS account's send limit: at 20/s pacing is all we'd measure.
    settings = settings.model_copy(update={"sms_max_per_second": UNPACED_SMS_PER_S})
    setup_tracing(settings, "notify-bench-delivery")  # as `notify worker run` does (NOTIFY_TRACING_ENABLED)
    results: dict[str, Any] = {
        "benchmark": "delivery",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "count": count,
        "max_in_flight": settings.delivery_max_in_flight,
        "sms_max_per_second": settings.sms_max_per_second,
        "metrics_enabled": settings.metrics_enabled,
        "tracing_enabled": settings.tracing_enabled,
        "sandbox": "own process",
    }
    with tempfile.TemporaryDirectory() as workdir:
        for channel in channels:
            results[channel.value] = _measure_channel(settings, channel, count, Path(workdir))
    return results


def run(args: argparse.Namespace, settings: Settings) -> int:
    channels = [Channel(c) for c in (args.channels or [c.value for c in Channel])]
    results = measure(settings, channels, args.count)
    for channel in channels:
        figures = results[channel.value]
        lat, bare = figures["send_latency"], figures["bare_client"]
        print(
            f"  {channel.value:8} {figures['deliveries_per_s']:>7} deliveries/s ({figures['sent']} in"
            f" {figures['seconds']} s); send p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms;"
            f" bare {bare['library']} {bare['deliveries_per_s']}/s (x{figures['worker_vs_bare']});"
            f" raw consume {figures['raw_consume_baseline']['records_per_s']} rec/s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures -> {args.out}")
    return 0

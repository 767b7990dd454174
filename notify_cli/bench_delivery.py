"""``notify bench delivery``: deliveries/s and send latency of one worker process against its sandbox.

For each channel asked for: throw-away topics and database schema, N channel messages published,
then one in-process worker drains them in burst mode against the channel's sandbox on loopback.
The raw baseline, in the same run on the same broker, is a plain consumer reading and committing the
same N records: what Kafka alone costs, so the gap is the delivery log, the provider call and events.
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
from notify_cli.scratch import scratch
from notify_core.db.connect import make_async_pool
from notify_core.instruments import Instruments
from notify_core.kafka_clients import make_consumer
from notify_core.settings import Settings
from notify_core.stats import summary_ms
from notify_core.topics import Channel, topic_names
from notify_core.tracing import setup_tracing
from sandboxes.local import local_provider
from sandboxes.messages import channel_message, publish

UNPACED_SMS_PER_S = 1_000_000.0


def register_kind(kinds: Any) -> None:
    parser = kinds.add_parser("delivery", help="one worker's deliveries/s and send latency vs a raw consumer")
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


def run(args: argparse.Namespace, settings: Settings) -> int:
    channels = [Channel(c) for c in (args.channels or [c.value for c in Channel])]
    # The worker against its sandbox, not an SNS account's send limit: at 20/s pacing is all we'd measure.
    settings = settings.model_copy(update={"sms_max_per_second": UNPACED_SMS_PER_S})
    setup_tracing(settings, "notify-bench-delivery")  # as `notify worker run` does (NOTIFY_TRACING_ENABLED)
    results: dict[str, Any] = {
        "benchmark": "delivery",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    results["count"] = args.count
    results["max_in_flight"] = settings.delivery_max_in_flight
    results["sms_max_per_second"] = settings.sms_max_per_second
    results["metrics_enabled"] = settings.metrics_enabled
    results["tracing_enabled"] = settings.tracing_enabled
    for channel in channels:
        with (
            scratch(settings) as (bench, schema),
            tempfile.TemporaryDirectory() as workdir,
            local_provider(channel, Path(workdir)) as provider,
        ):
            target = TARGETS[channel]
            publish(
                bench,
                channel,
                (channel_message(channel, target(i), user_id=f"user-{i % 500}") for i in range(args.count)),
            )
            raw_s = _raw_consume(bench, topic_names(bench).channel(channel), args.count)
            figures = asyncio.run(_drain(bench, schema, channel, provider.make_adapter()))
        figures["provider"] = provider.name
        figures["raw_consume_baseline"] = {
            "seconds": round(raw_s, 3),
            "records_per_s": round(args.count / raw_s) if raw_s > 0 else None,
        }
        results[channel.value] = figures
        lat = figures["send_latency"]
        print(
            f"  {channel.value:8} {figures['deliveries_per_s']:>7} deliveries/s ({figures['sent']} in"
            f" {figures['seconds']} s); send p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms;"
            f" raw consume {figures['raw_consume_baseline']['records_per_s']} rec/s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures -> {args.out}")
    return 0

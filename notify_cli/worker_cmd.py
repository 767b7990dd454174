"""``notify worker run --channel C``: one channel's delivery worker (see ``worker_group`` for its group)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import timedelta
from typing import Any

from consumers.delivery.adapters import build_adapter
from consumers.delivery.delivery_log import DeliveryLog
from consumers.delivery.worker import Deactivate, Worker, WorkerStats, worker_group
from notify_core.db.connect import make_async_pool, make_pool
from notify_core.identity import with_slot
from notify_core.instruments import Instruments
from notify_core.metrics_server import served_instruments
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.tracing import setup_tracing
from notify_core.userdata.repository import UserDataRepository


def register(commands: Any) -> None:
    parser = commands.add_parser("worker", help="channel delivery workers")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="deliver one channel's messages through its provider")
    run.add_argument("--channel", required=True, choices=[c.value for c in Channel])
    run.add_argument("--burst", action="store_true", help="stop once idle (tests, scripts)")
    run.add_argument("--idle", type=float, default=3.0, help="seconds without work that count as idle")
    run.set_defaults(handler=run_worker)


def make_deactivate(repo: UserDataRepository) -> Deactivate:
    """Turns a provider's 'this target is dead' into a deactivated device or contact row."""

    async def deactivate(channel: Channel, target_ref: str, reason: str) -> None:
        kind, _, raw_id = target_ref.partition(":")
        if kind == "device":
            await asyncio.to_thread(repo.deactivate_device, int(raw_id), reason)
        elif kind == "contact":
            await asyncio.to_thread(repo.deactivate_contact, channel, int(raw_id), reason)
        else:
            raise ValueError(f"target_ref {target_ref!r} names neither a device nor a contact")

    return deactivate


async def serve(settings: Settings, channel: Channel, *, burst: bool, idle_s: float) -> WorkerStats:
    if channel is Channel.EMAIL:
        # The e-mail worker signs unsubscribe links: refuse the dev secret before anything is opened.
        settings.check_for_production()
    setup_tracing(settings, f"notify-worker-{channel.value}")
    kind = f"worker:{worker_group(settings, channel)}"
    settings, slot = await asyncio.to_thread(with_slot, settings, "worker_instance_id", kind)
    try:
        job = f"notify-worker-{channel.value}"
        with served_instruments(settings, job=job, instance=settings.worker_instance_id) as instruments:
            return await _serve(settings, channel, burst=burst, idle_s=idle_s, instruments=instruments)
    finally:
        if slot is not None:
            slot.release()


async def _serve(
    settings: Settings, channel: Channel, *, burst: bool, idle_s: float, instruments: Instruments
) -> WorkerStats:
    adapter, provider = build_adapter(channel, settings)
    pool = await make_async_pool(settings, max_size=8)
    users = make_pool(settings, max_size=2)
    log = DeliveryLog(
        pool,
        owner=f"{worker_group(settings, channel)}-{settings.worker_instance_id}",
        lease=timedelta(seconds=settings.delivery_lease_s),
    )
    worker = Worker(
        settings,
        channel,
        adapter,
        log,
        provider=provider,
        deactivate=make_deactivate(UserDataRepository(users)),
        instruments=instruments,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        return await worker.run(stop_when_idle=burst, idle_s=idle_s)
    finally:
        await pool.close()
        users.close()


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    stats = asyncio.run(serve(settings, Channel(args.channel), burst=args.burst, idle_s=args.idle))
    print(json.dumps({"channel": args.channel, **stats.counts()}))
    return 0

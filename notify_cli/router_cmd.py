"""``notify router run``: the router process (consumer group ``notify-router``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from consumers.router.app import Router
from notify_core.db.connect import connect, make_pool
from notify_core.identity import with_slot
from notify_core.instruments import Instruments
from notify_core.metrics_server import served_instruments
from notify_core.settings import Settings
from notify_core.tracing import setup_tracing
from notify_core.userdata.repository import UserDataRepository


def register(commands: Any) -> None:
    parser = commands.add_parser("router", help="the router process")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="consume requests and fan them out to the channel topics")
    run.add_argument("--burst", action="store_true", help="stop once idle (tests, scripts)")
    run.add_argument("--idle", type=float, default=3.0, help="seconds without records that count as idle")
    run.set_defaults(handler=run_router)


def build_router(settings: Settings, instruments: Instruments | None = None) -> Router:
    pool = make_pool(settings, min_size=1, max_size=2)
    repository = UserDataRepository(
        pool, cache_size=settings.user_cache_size, cache_ttl_s=settings.user_cache_ttl_s
    )
    return Router(settings, lambda: connect(settings), repository, instruments=instruments)


def run_router(args: argparse.Namespace, settings: Settings) -> int:
    if settings.tracking_enabled:
        settings.check_for_production()  # it signs click, open and push-open links
    setup_tracing(settings, "notify-router")
    settings, slot = with_slot(settings, "router_instance_id", f"router:{settings.router_group}")
    try:
        with served_instruments(
            settings, job="notify-router", instance=settings.router_instance_id
        ) as instruments:
            router = build_router(settings, instruments)
            router.install_signal_handlers()
            stats = router.run(stop_when_idle=args.burst, idle_s=args.idle)
    finally:
        if slot is not None:
            slot.release()
    print(
        json.dumps(
            {
                "batches": stats.batches,
                "records": stats.records,
                "released": stats.released,
                "aborted": stats.aborted,
                "decisions": dict(stats.decisions),
            }
        )
    )
    return 0

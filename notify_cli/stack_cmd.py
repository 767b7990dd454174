"""``notify stack up|down|status``: the local Kafka + PostgreSQL stack, and Prometheus on request."""

from __future__ import annotations

import argparse
from typing import Any

from notify_core import stack
from notify_core.settings import Settings
from notify_core.stack import prometheus


def register(commands: Any) -> None:
    parser = commands.add_parser("stack", help="start, stop or inspect the local Kafka + PostgreSQL stack")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("up", "start what is not running"),
        ("down", "stop what we started"),
        ("status", "what is running"),
    ):
        actions.add_parser(name, help=text).set_defaults(handler=run, action=name)
    actions.choices["up"].add_argument(
        "--with-monitoring",
        action="store_true",
        help="also start Prometheus (scrapes every registered process, loads monitoring/alerts.yml)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "up":
        monitoring = bool(args.with_monitoring)
        for line in stack.up(settings, with_monitoring=monitoring):
            print(line)
        if monitoring:
            print(f"Prometheus: {prometheus.url(settings)} (alerts: {prometheus.url(settings)}/alerts)")
        return 0
    action = {"down": stack.down, "status": stack.status}[args.action]
    for line in action(settings):
        print(line)
    return 0

"""``notify stack up|down|status``: the local Kafka + PostgreSQL stack."""

from __future__ import annotations

import argparse
from typing import Any

from notify_core import stack
from notify_core.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser("stack", help="start, stop or inspect the local Kafka + PostgreSQL stack")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("up", "start what is not running"),
        ("down", "stop what we started"),
        ("status", "what is running"),
    ):
        actions.add_parser(name, help=text).set_defaults(handler=run, action=name)


def run(args: argparse.Namespace, settings: Settings) -> int:
    action = {"up": stack.up, "down": stack.down, "status": stack.status}[args.action]
    for line in action(settings):
        print(line)
    return 0

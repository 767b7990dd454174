"""``notify topics apply|describe``: topics from config, and drift between config and cluster."""

from __future__ import annotations

import argparse
from typing import Any

from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.topic_admin import apply_topics, describe_topics
from notify_core.topics import topic_specs


def register(commands: Any) -> None:
    parser = commands.add_parser("topics", help="create topics or show drift")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("apply", help="create/alter every topic to match config (idempotent)").set_defaults(
        handler=run, action="apply"
    )
    actions.add_parser("describe", help="every topic with partitions, config and drift").set_defaults(
        handler=run, action="describe"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    admin = make_admin(settings)
    specs = topic_specs(settings)
    if args.action == "apply":
        lines = apply_topics(admin, specs)
        failed = any(line.startswith("cannot fix") for line in lines)
    else:
        lines = describe_topics(admin, specs)
        failed = any("MISSING" in line or "DRIFT" in line for line in lines)
    for line in lines:
        print(line)
    return 1 if failed else 0

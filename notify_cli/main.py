"""``notify``: parse the command line, build ``Settings`` once, dispatch.

Every command returns an exit code: 0 success, 1 a failure it explains, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from notify_cli import bench, db_cmd, demo, dlq_cmd, messages, router_cmd, stack_cmd, topics_cmd, worker_cmd
from notify_core.exceptions import NotifyError
from notify_core.logs import configure_logging
from notify_core.settings import Settings
from producer.exceptions import InvalidRequestError

Command = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notify", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="structlog level (default WARNING)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (stack_cmd, topics_cmd, db_cmd, messages, router_cmd, worker_cmd, dlq_cmd, bench, demo):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, json=True)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: bad NOTIFY_* setting:\n{exc}", file=sys.stderr)
        return 2
    handler: Command = args.handler
    try:
        return handler(args, settings)
    except InvalidRequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NotifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

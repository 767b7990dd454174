"""``notify``: parse the command line, build ``Settings`` once, dispatch.

Every command returns an exit code: 0 success, 1 a failure it explains, 2 bad input.

The base install (the SDK) carries ``send``, ``read`` and ``topics``; the other commands import what an
extra installs. Without it they are still listed, and running one says which extra to install.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from pydantic import ValidationError

from notify_core.exceptions import NotifyError
from notify_core.logs import configure_logging
from notify_core.settings import Settings
from producer.exceptions import InvalidRequestError

Command = Callable[[argparse.Namespace, Settings], int]

DISTRIBUTION = "notify-platform"
# Each command module in help order, the commands it registers, and the extra it needs (None: the base
# install). A module is imported only when its extra is installed.
COMMANDS: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("stack_cmd", ("stack",), "server"),
    ("topics_cmd", ("topics",), None),
    ("db_cmd", ("db",), "server"),
    ("messages", ("send", "read"), None),
    ("router_cmd", ("router",), "server"),
    ("worker_cmd", ("worker",), "server"),
    ("dlq_cmd", ("dlq",), "server"),
    ("sink_cmd", ("sink",), "server"),
    ("api_cmd", ("api", "keys"), "server"),
    ("report_cmd", ("report",), "server"),
    ("lag_cmd", ("lag",), "server"),
    ("bench", ("bench",), "dev"),
    ("profile_top", ("profile",), "dev"),
    ("demo", ("demo",), "dev"),
)
# One line of our own Requires-Dist metadata: name, its extras, and the extra that asks for it.
_REQUIREMENT = re.compile(
    r"""^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*) \s* (?:\[(?P<extras>[^\]]*)\])? [^;]*
    (?:;\s* extra \s*==\s* "(?P<extra>[^"]+)")? \s*$""",
    re.VERBOSE,
)


def missing_for(extra: str) -> list[str]:
    """The distributions ``DISTRIBUTION[extra]`` asks for that are not installed (none when running
    from a source tree that was never installed: then nothing is known to be missing)."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    missing: list[str] = []
    for line in requirements:
        match = _REQUIREMENT.match(line)
        if match is None or match["extra"] != extra:
            continue
        if match["name"] == DISTRIBUTION:  # an extra that includes another (dev includes server)
            for included in (match["extras"] or "").split(","):
                missing += [name for name in missing_for(included.strip()) if name not in missing]
            continue
        try:
            metadata.distribution(match["name"])
        except metadata.PackageNotFoundError:
            missing.append(match["name"])
    return missing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notify", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="structlog level (default WARNING)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name, names, extra in COMMANDS:
        missing = missing_for(extra) if extra is not None else []
        if not missing:
            importlib.import_module(f"notify_cli.{module_name}").register(commands)
            continue
        for name in names:  # still listed, so that running it says what to install
            needs = (
                f"`notify {name}` needs the {extra} extra ({', '.join(missing)} not installed):"
                f" pip install '{DISTRIBUTION}[{extra}]'"
            )
            stub = commands.add_parser(name, help=f"(needs {DISTRIBUTION}[{extra}])", description=needs)
            stub.set_defaults(needs_extra=needs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    needs_extra: str | None = getattr(args, "needs_extra", None)
    if needs_extra is not None:  # whatever its arguments: the command is not installed
        print(f"error: {needs_extra}", file=sys.stderr)
        return 1
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # what parse_args says
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

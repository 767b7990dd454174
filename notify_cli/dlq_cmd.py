"""``notify dlq list|show|replay``: inspect and re-inject dead letters.

Records on a dead-letter topic that are not dead letters are skipped and counted (on stderr, so
``show``'s JSON lines stay clean); letters replay cannot re-inject are listed with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from consumers.delivery.dead_letters import (
    Letter,
    Refusal,
    Selection,
    Skipped,
    replay,
    scan_letters,
    split_replayable,
)
from consumers.delivery.delivery_log import DeliveryLog
from notify_core.codec import CHANNEL_MESSAGE, EVENT, REQUEST, default_codec
from notify_core.db.connect import make_async_pool
from notify_core.exceptions import DecodeError
from notify_core.settings import Settings

SOURCES = ("requests", "ios", "android", "sms", "email", "events")


def register(commands: Any) -> None:
    parser = commands.add_parser("dlq", help="inspect and replay dead letters")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in (
        ("list", "one line per dead letter"),
        ("show", "whole dead letters as JSON, payload decoded"),
        ("replay", "re-inject the selected dead letters"),
    ):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("source", choices=SOURCES, help="whose dead-letter topic")
        sub.add_argument("--reason", help="only this error_type (e.g. BadDeviceToken, attempts_exhausted)")
        sub.add_argument("--since", type=_when, help="failed at or after (ISO 8601, or e.g. 2h, 30m ago)")
        sub.add_argument("--until", type=_when, help="failed before (ISO 8601, or e.g. 10m)")
        sub.add_argument("--id", dest="ids", action="append", help="dead_letter_id (repeatable)")
        sub.set_defaults(handler=run)
    actions.choices["replay"].add_argument("--dry-run", action="store_true", help="list, do not replay")


def _when(text: str) -> datetime:
    """ISO 8601 with a zone, or a duration back from now: 90s, 30m, 2h, 7d."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now().astimezone() - timedelta(**{units[text[-1]]: int(text[:-1])})
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone (e.g. 2026-01-01T00:00Z)")
    return value


def run(args: argparse.Namespace, settings: Settings) -> int:
    selection = Selection(reason=args.reason, since=args.since, until=args.until)
    scan = scan_letters(settings, args.source, selection)
    letters = scan.letters
    if scan.skipped:
        print(skipped_report(scan.skipped), file=sys.stderr)
    if args.ids:
        wanted = set(args.ids)
        letters = [item for item in letters if item.letter["dead_letter_id"] in wanted]
    if args.action == "list" or (args.action == "replay" and args.dry_run):
        for item in letters:
            print(_line(item))
        print(f"{len(letters)} dead letter(s)")
        refused = split_replayable(letters, args.source)[1] if args.action == "replay" else []
        if refused:
            print(refused_report(refused), file=sys.stderr)
        return 0
    if args.action == "show":
        for item in letters:
            print(json.dumps(_shown(item, args.source), default=str, ensure_ascii=False))
        return 0
    replayable, refused = split_replayable(letters, args.source)
    if refused:
        print(refused_report(refused), file=sys.stderr)
    count = asyncio.run(_replay(settings, args.source, replayable)) if replayable else 0
    print(
        f"replayed {count} dead letter(s) from {args.source}"
        + (f", refused {len(refused)}" if refused else "")
    )
    return 0


def skipped_report(skipped: list[Skipped], *, limit: int = 10) -> str:
    """How many DLQ records were skipped as undecodable, and why (the first ``limit`` of them)."""
    lines = [f"skipped {len(skipped)} record(s) that are not dead letters (they do not decode as one):"]
    lines += [f"  {_where(s.record.partition, s.record.offset)} {s.reason[:200]}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return "\n".join(lines)


def refused_report(refused: list[Refusal]) -> str:
    """One line per letter replay leaves where it is, with the reason."""
    lines = [f"refused {len(refused)} dead letter(s) that cannot be replayed:"]
    lines += [f"  {r.item.letter['dead_letter_id']} {r.reason[:300]}" for r in refused]
    return "\n".join(lines)


def _where(partition: int, offset: int) -> str:
    return f"{partition}@{offset}"


async def _replay(settings: Settings, source: str, letters: list[Letter]) -> int:
    if source in ("requests", "events"):  # no delivery log to reopen
        return await replay(settings, source, letters, None)
    pool = await make_async_pool(settings, max_size=2)
    try:
        log = DeliveryLog(pool, owner="notify-dlq-replay", lease=timedelta(seconds=30))
        return await replay(settings, source, letters, log)
    finally:
        await pool.close()


def _line(item: Letter) -> str:
    letter = item.letter
    where = _where(item.record.partition, item.record.offset)
    message = letter["error_message"].replace("\n", " ")[:80]
    # The truncation note ends error_message, past what fits on the line: flag it up front.
    cut = " TRUNCATED" if letter.get("payload_truncated") else ""
    return (
        f"{letter['failed_at']:%Y-%m-%d %H:%M:%S} {where:>8} {letter['dead_letter_id']} {letter['stage']:14}"
        f" {letter['error_type']:22} attempts={letter['attempts']}{cut} {message}"
    )


def _shown(item: Letter, source: str) -> dict[str, Any]:
    shown = {k: v for k, v in item.letter.items() if k not in ("payload", "key", "headers")}
    if item.letter.get("payload_truncated"):
        kept = len(item.letter["payload"])
        shown["payload"] = f"<truncated: first {kept} of {item.letter['payload_size']} bytes kept>"
        shown["key"] = (item.letter["key"] or b"").decode("utf-8", "replace")
        return shown
    try:
        schema = {"requests": REQUEST, "events": EVENT}.get(source, CHANNEL_MESSAGE)
        shown["payload"] = default_codec().decode(item.letter["payload"], schema)
    except DecodeError as exc:
        shown["payload"] = f"<undecodable: {exc}>"
    shown["key"] = (item.letter["key"] or b"").decode("utf-8", "replace")
    return shown

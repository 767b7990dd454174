"""``notify send`` (publish one request) and ``notify read`` (decode a topic to JSON lines)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from notify_core.codec import CHANNEL_MESSAGE, DEAD_LETTER, EVENT, REQUEST, default_codec
from notify_core.exceptions import DecodeError
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import TopicNames, topic_names
from producer.client import NotificationClient


def register(commands: Any) -> None:
    send = commands.add_parser("send", help="publish one notification request and wait for the ack")
    send.add_argument("--json", dest="json_body", help="the whole request as JSON ('-' reads stdin)")
    send.add_argument("--user", dest="user_id")
    send.add_argument("--template", dest="template_id")
    send.add_argument("--service")
    send.add_argument("--category")
    send.add_argument("--priority")
    send.add_argument("--channel", dest="channels", action="append", help="repeat for several")
    send.add_argument("--param", dest="params", action="append", default=[], metavar="NAME=VALUE")
    send.add_argument("--idempotency-key")
    send.set_defaults(handler=run_send)

    read = commands.add_parser("read", help="decode records of a topic (from its start) as JSON lines")
    read.add_argument("topic", help="full topic name, or a short one: requests, events, ios, sms.dlq, ...")
    read.add_argument("--max", type=int, default=20, dest="max_records")
    read.add_argument("--timeout", type=float, default=15.0)
    read.set_defaults(handler=run_read)


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The request dict from ``--json`` and/or the single-field flags (flags win)."""
    body: dict[str, Any] = {}
    if args.json_body:
        text = sys.stdin.read() if args.json_body == "-" else args.json_body
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise ValueError("--json must be a JSON object")
        body.update(loaded)
    for name in ("user_id", "template_id", "service", "category", "priority", "channels", "idempotency_key"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    for item in args.params:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param {item!r} must look like NAME=VALUE")
        body.setdefault("params", {})[name] = value
    return body


def run_send(args: argparse.Namespace, settings: Settings) -> int:
    try:
        body = request_from_args(args)
    except ValueError as exc:  # includes json.JSONDecodeError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with NotificationClient(settings) as client:
        result = client.send(body)
    print(json.dumps(result.__dict__))
    return 0


def schema_for_topic(names: TopicNames, topic: str) -> str:
    if topic == names.events:
        return EVENT
    if topic == names.requests:
        return REQUEST
    if topic.endswith(".dlq"):
        return DEAD_LETTER
    return CHANNEL_MESSAGE


def resolve_topic(names: TopicNames, short: str) -> str:
    return short if short.startswith(f"{names.prefix}.") else f"{names.prefix}.{short}"


def run_read(args: argparse.Namespace, settings: Settings) -> int:
    names = topic_names(settings)
    topic = resolve_topic(names, args.topic)
    schema = schema_for_topic(names, topic)
    codec = default_codec()
    for record in read_records(settings, topic, max_records=args.max_records, timeout_s=args.timeout):
        try:
            value: Any = codec.decode(record.value or b"", schema)
        except DecodeError as exc:
            value = {"undecodable": str(exc)}
        print(
            json.dumps(
                {"partition": record.partition, "offset": record.offset, "value": value},
                default=_json_default,
            )
        )
    return 0


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

"""Read notification events from Kafka and print them as JSON lines: a reader for a data team.

Self-contained on purpose (fastavro and confluent-kafka only, nothing of this repository's code), so
it can be copied out and adapted. What it shows:

- the records are Avro in the specification's single-object encoding: ``C3 01``, then the 8-byte
  CRC-64-AVRO fingerprint of the writer schema (little-endian, as the Java library writes it), then
  the Avro binary body;
- the writer schema is found by that fingerprint among every ``notification_event.v<N>.avsc``, and
  resolved to one reader schema (the newest by default), so every line has the same fields: a field
  an older writer did not have is null;
- the analytics topic is written partly in Kafka transactions (the router), so it is read with
  ``isolation.level=read_committed``: an aborted transaction's events are never seen.

Usage::

    python examples/read_events.py notifications.events --max 20
    python examples/read_events.py notifications.events --bootstrap broker:9092 --schemas ./schemas \\
        --max 1000 --timeout 60 --group my-reader

It prints one JSON object per event on stdout (timestamps as ISO 8601 UTC) and stops after ``--max``
events, exiting 0, or after ``--timeout`` seconds, exiting 1 if it read fewer. A record that is not a
notification event (unknown fingerprint, not single-object) is reported on stderr and skipped.
Without ``--group`` it reads the topic from the beginning under a fresh consumer group and commits
nothing; with ``--group`` it resumes from that group's committed offsets and commits what it printed.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Consumer, Message
from fastavro.schema import fingerprint, to_parsing_canonical_form

MARKER = b"\xc3\x01"
HEADER_SIZE = 2 + 8
SCHEMA_FILE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")
DEFAULT_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


class NotAnEvent(ValueError):
    """A record that is not a notification event this reader knows."""


def load_schemas(schema_dir: Path, name: str = "notification_event") -> dict[int, dict[str, Any]]:
    """Every version of ``name`` in ``schema_dir``, parsed: {version: schema}."""
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(schema_dir.glob(f"{name}.v*.avsc")):
        match = SCHEMA_FILE.match(path.name)
        if match is None or match["name"] != name:
            continue
        parsed = fastavro.parse_schema(json.loads(path.read_text()))
        if not isinstance(parsed, dict):
            raise SystemExit(f"{path}: not a record schema")
        found[int(match["version"])] = parsed
    if not found:
        raise SystemExit(f"no {name}.v<N>.avsc in {schema_dir}")
    return found


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """The 8 bytes a writer puts after ``C3 01``: CRC-64-AVRO of the Parsing Canonical Form.

    fastavro returns the hex of those 8 bytes in wire order (little-endian), which is what Java's
    ``SchemaNormalization.parsingFingerprint64`` gives when written as a little-endian long.
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(dict(schema)), "CRC-64-AVRO"))


class EventDecoder:
    """Single-object records in, dicts in the reader schema's shape out."""

    def __init__(self, versions: Mapping[int, dict[str, Any]], reader_version: int | None = None) -> None:
        self.by_fingerprint = {schema_fingerprint(s): (v, s) for v, s in versions.items()}
        self.reader_version = max(versions) if reader_version is None else reader_version
        self.reader = versions[self.reader_version]

    def decode(self, value: bytes) -> dict[str, Any]:
        if len(value) < HEADER_SIZE or value[:2] != MARKER:
            raise NotAnEvent("not an Avro single-object record")
        known = self.by_fingerprint.get(value[2:HEADER_SIZE])
        if known is None:
            raise NotAnEvent(f"unknown writer schema fingerprint {value[2:HEADER_SIZE].hex()}")
        version, writer = known
        body = io.BytesIO(value[HEADER_SIZE:])
        # Same schema: no resolution needed. Otherwise fastavro resolves writer -> reader (fields
        # added since are filled with their defaults, fields removed since are skipped).
        reader = None if version == self.reader_version else self.reader
        record = fastavro.schemaless_reader(body, writer, reader)
        if not isinstance(record, dict):
            raise NotAnEvent("the body is not a record")
        return record


def to_json(event: Mapping[str, Any]) -> str:
    def plain(value: object) -> object:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, bytes):
            return value.hex()
        raise TypeError(f"{type(value).__name__} is not JSON")

    return json.dumps(event, default=plain, ensure_ascii=False, sort_keys=False)


def consumer_for(bootstrap: str, group: str | None) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            # A fresh group reads everything; a named one resumes where it committed.
            "group.id": group or f"read-events-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "earliest",
            # The router writes its events in Kafka transactions: never show an aborted one.
            "isolation.level": "read_committed",
            # Offsets are committed by hand, and only for what was printed (named groups only).
            "enable.auto.commit": False,
        }
    )


def read(
    consumer: Consumer, topic: str, decoder: EventDecoder, *, count: int, timeout_s: float, commit: bool
) -> int:
    """Print up to ``count`` events from ``topic`` within ``timeout_s``; how many were printed."""
    consumer.subscribe([topic])
    printed = 0
    deadline = time.monotonic() + timeout_s
    last: Message | None = None
    while printed < count and time.monotonic() < deadline:
        message = consumer.poll(min(1.0, max(0.0, deadline - time.monotonic())))
        if message is None:
            continue
        error = message.error()
        if error is not None:  # most are passing (a topic not created yet); a fatal one ends the run
            if error.fatal():
                raise SystemExit(f"kafka: {error}")
            print(f"kafka: {error}", file=sys.stderr)
            continue
        last = message
        try:
            event = decoder.decode(message.value() or b"")
        except (NotAnEvent, EOFError, ValueError, IndexError) as exc:
            where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
            print(f"skipped {where}: {exc}", file=sys.stderr)
            continue
        print(to_json(event), flush=True)
        printed += 1
    if commit and last is not None:
        consumer.commit(asynchronous=False)
    return printed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print notification events from Kafka as JSON lines.")
    parser.add_argument("topic", help="the analytics topic, e.g. notifications.events")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMAS, help="folder of *.avsc files")
    parser.add_argument("--max", type=int, default=10, dest="count", help="stop after this many events")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds")
    parser.add_argument("--group", help="consumer group to resume from and commit to (default: none)")
    parser.add_argument(
        "--reader-version", type=int, help="the notification_event version to read as (default: newest)"
    )
    args = parser.parse_args(argv)

    decoder = EventDecoder(load_schemas(args.schemas), args.reader_version)
    consumer = consumer_for(args.bootstrap, args.group)
    try:
        printed = read(
            consumer,
            args.topic,
            decoder,
            count=args.count,
            timeout_s=args.timeout,
            commit=args.group is not None,
        )
    finally:
        consumer.close()
    if printed < args.count:
        print(f"only {printed} of {args.count} events within {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

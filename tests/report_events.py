"""Analytics events written as the sink's Parquet files, for the report's tests.

Follows the sink's contract by hand (so the report is tested against the contract, not against
the sink's code): ``<root>/date=YYYY-MM-DD/<topic>+<partition>+<first offset>.parquet``, partitioned
by the event's ``occurred_at`` UTC date, with the columns of ``notification_event`` v2 (or v1, for
an old file) and ``_topic``, ``_partition``, ``_offset``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]  # pyarrow ships no type information
import pyarrow.fs as pafs  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

TOPIC = "notifications.events"
_V1 = [
    ("event_id", pa.string(), False),
    ("event_type", pa.string(), False),
    ("occurred_at", pa.timestamp("ms", tz="UTC"), False),
    ("notification_id", pa.string(), False),
    ("delivery_id", pa.string(), True),
    ("user_id", pa.string(), False),
    ("service", pa.string(), True),
    ("channel", pa.string(), True),
    ("category", pa.string(), True),
    ("reason", pa.string(), True),
    ("provider", pa.string(), True),
    ("provider_message_id", pa.string(), True),
    ("attempt", pa.int32(), True),
    ("latency_ms", pa.float64(), True),
    ("attributes", pa.map_(pa.string(), pa.string()), False),
]
_V2_ADDED = [
    ("template_id", pa.string(), True),
    ("locale", pa.string(), True),
    ("requested_at", pa.timestamp("ms", tz="UTC"), True),
]
_META = [("_topic", pa.string(), False), ("_partition", pa.int32(), False), ("_offset", pa.int64(), False)]
V1_SCHEMA = pa.schema([pa.field(n, t, nullable=k) for n, t, k in (*_V1, *_META)])
V2_SCHEMA = pa.schema([pa.field(n, t, nullable=k) for n, t, k in (*_V1, *_V2_ADDED, *_META)])


def at(text: str) -> datetime:
    """``2026-03-02T10:00:00.050`` as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ev(
    event_type: str,
    when: str,
    notification_id: str,
    *,
    event_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One event as the sink stores it; ``fields`` are further columns (delivery_id, channel, ...)."""
    record: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": at(when),
        "notification_id": notification_id,
        "user_id": f"user-of-{notification_id}",
        "attributes": {},
    }
    record.update(fields)
    return record


def write_events(
    root: str,
    events: Sequence[dict[str, Any]],
    *,
    filesystem: Any = None,
    partition: int = 0,
    first_offset: int = 0,
    schema: Any = V2_SCHEMA,
) -> list[str]:
    """Write ``events`` (taken as consecutive offsets of one topic partition from ``first_offset``)
    into one file per date partition, as a sink flush does; returns the files' paths."""
    fs = filesystem or pafs.LocalFileSystem()
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for offset, event in enumerate(events, start=first_offset):
        row = {**event, "_topic": TOPIC, "_partition": partition, "_offset": offset}
        by_day[event["occurred_at"].astimezone(UTC).date()].append(row)
    paths = []
    for day, rows in sorted(by_day.items()):
        directory = f"{root.rstrip('/')}/date={day.isoformat()}"
        fs.create_dir(directory, recursive=True)
        path = f"{directory}/{TOPIC}+{partition}+{rows[0]['_offset']:020d}.parquet"
        columns = {field.name: [row.get(field.name) for row in rows] for field in schema}
        columns["attributes"] = [list((row.get("attributes") or {}).items()) for row in rows]
        pq.write_table(pa.Table.from_pydict(columns, schema=schema), path, filesystem=fs)
        paths.append(path)
    return paths

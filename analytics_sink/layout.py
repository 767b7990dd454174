"""Where the sink's objects go, relative to its root (a directory or ``s3://bucket/prefix``) (pure).

The layout is a contract with ``notify report`` and anyone else reading the files::

    date=YYYY-MM-DD/<topic>+<partition>+<first offset, 20 digits>.parquet
    _manifests/<topic>+<partition>.json

``date=`` is the UTC date of the event's ``occurred_at`` (a Hive-style partition: readers get it as
a ``date`` column; the files hold no such column). A file is named after the *first* offset of the
flush that wrote it, so a flush replayed from the committed offset after a crash writes the same
names again. ``+`` separates the parts because a Kafka topic name cannot contain it. Names starting
with ``_`` or ``.`` (manifests, temporary files) are skipped by pyarrow's dataset discovery and by a
``*.parquet`` glob.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

MANIFEST_DIR = "_manifests"
OFFSET_DIGITS = 20  # a Kafka offset is a signed 64-bit number: at most 19 digits
_FILE = re.compile(
    r"^date=(?P<date>\d{4}-\d{2}-\d{2})/(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d{20})"
    r"\.parquet$"
)
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True, order=True)
class FileName:
    """What a data file's key says: its date partition and the flush it came from."""

    day: date
    topic: str
    partition: int
    first: int

    @property
    def key(self) -> str:
        return file_key(self.day, self.topic, self.partition, self.first)


def event_date(occurred_at: datetime) -> date:
    """The partition an event lands in: the UTC date of ``occurred_at`` (naive means UTC)."""
    if occurred_at.tzinfo is None:
        return occurred_at.date()
    return occurred_at.astimezone(UTC).date()


def date_dir(day: date) -> str:
    return f"date={day.isoformat()}"


def file_key(day: date, topic: str, partition: int, first: int) -> str:
    """``date=YYYY-MM-DD/<topic>+<partition>+<first offset>.parquet``."""
    _check(topic, partition, first)
    return f"{date_dir(day)}/{topic}+{partition}+{first:0{OFFSET_DIGITS}d}.parquet"


def manifest_key(topic: str, partition: int) -> str:
    """``_manifests/<topic>+<partition>.json``: the latest flush of that partition."""
    _check(topic, partition, 0)
    return f"{MANIFEST_DIR}/{topic}+{partition}.json"


def parse_file_key(key: str) -> FileName | None:
    """A data file's key taken apart; None for anything else (a manifest, a stray object)."""
    match = _FILE.match(key)
    if match is None:
        return None
    try:
        day = date.fromisoformat(match["date"])
    except ValueError:
        return None
    return FileName(day, match["topic"], int(match["partition"]), int(match["first"]))


def _check(topic: str, partition: int, first: int) -> None:
    if not _TOPIC.match(topic):
        raise ValueError(f"{topic!r} is not a Kafka topic name")
    if partition < 0 or first < 0:
        raise ValueError(f"partition {partition} and offset {first} cannot be negative")

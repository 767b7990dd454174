"""Where ``notify report`` reads from: the sink's Parquet files as one pyarrow dataset (I/O).

The files follow the sink's layout (``analytics_sink.layout``)::

    <root>/date=YYYY-MM-DD/<topic>+<partition>+<first offset>.parquet

with ``root`` a local directory (or ``file://`` URL) or ``s3://bucket/prefix``. Only the ``date=``
directories inside the days asked for are listed and read: the others are never opened. S3 goes
through ``pyarrow.fs.S3FileSystem`` (``settings.s3_endpoint``, ``NOTIFY_AWS_*``), since DuckDB's own
S3 support is an extension it would have to download.

The dataset is read with ``READ_SCHEMA``, the columns the report's SQL uses: a column a file lacks
(``template_id``, ``locale`` and ``requested_at`` before ``notification_event`` v2) reads as NULL,
columns the report does not use are never read, and timestamps arrive as UTC without a zone
(microseconds: DuckDB's own ``TIMESTAMP``, so filters on them reach the Parquet scan).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]  # pyarrow ships no type information
import pyarrow.dataset as ds  # type: ignore[import-untyped,unused-ignore]
import pyarrow.fs as pafs  # type: ignore[import-untyped,unused-ignore]

from notify_core.exceptions import ConfigError
from notify_core.settings import Settings

READ_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("occurred_at", pa.timestamp("us")),
        ("notification_id", pa.string()),
        ("delivery_id", pa.string()),
        ("service", pa.string()),
        ("channel", pa.string()),
        ("category", pa.string()),
        ("reason", pa.string()),
        ("template_id", pa.string()),
        ("locale", pa.string()),
        ("requested_at", pa.timestamp("us")),
        ("attempt", pa.int32()),
        ("attributes", pa.map_(pa.string(), pa.string())),  # a ROUTED event's deliver_at
        ("_topic", pa.string()),
        ("_partition", pa.int64()),
        ("_offset", pa.int64()),
        ("date", pa.date32()),  # the Hive partition, from the directory name
    ]
)
_PARTITIONING = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")
_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Location:
    """A parsed ``--source``: the filesystem and the root path on it (no scheme)."""

    filesystem: Any  # pyarrow.fs.FileSystem
    root: str
    url: str


def locate(source: str, settings: Settings) -> Location:
    """``source`` (a path, ``file://`` URL or ``s3://bucket/prefix``) as a filesystem and root."""
    parts = urlsplit(source)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"{source!r}: an S3 source is s3://bucket/prefix")
        root = f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
        return Location(s3_filesystem(settings), root, source)
    if parts.scheme == "file":
        return Location(pafs.LocalFileSystem(), unquote(parts.path), source)
    if parts.scheme and len(parts.scheme) > 1:  # a one-letter "scheme" is a Windows drive
        raise ConfigError(f"{source!r}: the report reads a directory or s3://bucket/prefix")
    return Location(pafs.LocalFileSystem(), source, source)


def s3_filesystem(settings: Settings) -> Any:
    """pyarrow's S3 client for ``settings``: its endpoint (moto in tests; unset: AWS) and keys."""
    return pafs.S3FileSystem(
        access_key=settings.aws_access_key_id.get_secret_value(),
        secret_key=settings.aws_secret_access_key.get_secret_value(),
        region=settings.aws_region,
        endpoint_override=settings.s3_endpoint,
        allow_bucket_creation=False,
        allow_bucket_deletion=False,
    )


def days_wanted(names: Iterable[str], first: date, last: date) -> list[str]:
    """The ``date=YYYY-MM-DD`` names among ``names`` from ``first`` to ``last`` inclusive, sorted;
    anything else (``_manifests``, a stray file, an impossible date) is left out."""
    kept: list[str] = []
    for name in names:
        match = _DATE_DIR.match(name)
        if match is None:
            continue
        try:
            day = date.fromisoformat(match[1])
        except ValueError:
            continue
        if first <= day <= last:
            kept.append(name)
    return sorted(kept)


def data_files(location: Location, first: date, last: date) -> list[str]:
    """Paths of the Parquet files in the ``date=`` directories from ``first`` to ``last``."""
    fs = location.filesystem
    top = fs.get_file_info(pafs.FileSelector(location.root, allow_not_found=True, recursive=False))
    if not top and _is_missing_directory(location):
        raise ConfigError(f"{location.url}: no such directory")
    directories = {_name(info.path): info.path for info in top if info.type == pafs.FileType.Directory}
    files: list[str] = []
    for name in days_wanted(directories, first, last):
        listed = fs.get_file_info(pafs.FileSelector(directories[name], recursive=False))
        files += sorted(
            info.path
            for info in listed
            if info.type == pafs.FileType.File
            and info.path.endswith(".parquet")
            and not _name(info.path).startswith(("_", "."))  # the sink's temporary files
        )
    return files


def open_events(location: Location, first: date, last: date) -> Any:
    """The events of the ``date=`` partitions from ``first`` to ``last``, as a pyarrow dataset of
    ``READ_SCHEMA`` (an empty one when there are no files)."""
    files = data_files(location, first, last)
    if not files:
        return ds.dataset(READ_SCHEMA.empty_table())
    return ds.dataset(
        files,
        schema=READ_SCHEMA,
        format="parquet",
        filesystem=location.filesystem,
        partitioning=_PARTITIONING,
        partition_base_dir=location.root,
    )


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _is_missing_directory(location: Location) -> bool:
    """A local root that does not exist is a mistake worth saying; S3 has no empty "directories"."""
    if not isinstance(location.filesystem, pafs.LocalFileSystem):
        return False
    info = location.filesystem.get_file_info(location.root)
    return bool(info.type != pafs.FileType.Directory)

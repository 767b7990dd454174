"""One flush of one partition: its files and manifest (pure), written and recovered through a store.

``plan`` turns a ``FlushUnit`` into the Parquet files it lands as (one per UTC date, rows in offset
order) and the manifest that lists them; ``write`` puts the manifest first, then the files, in the
order ``manifest`` explains; ``recover`` is what a newly assigned partition runs before anything of
it is written again: it deletes the files of a flush that was never committed.

Each file's Parquet key-value metadata says where its rows came from (``notify.topic``,
``notify.partition``, ``notify.first_offset``, ``notify.last_offset``: the flush's whole range) and
which ``notification_event`` version the columns follow (``notify.event_schema``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]  # pyarrow ships no type information
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

from analytics_sink.batcher import FlushUnit
from analytics_sink.columns import to_table
from analytics_sink.layout import file_key, manifest_key
from analytics_sink.manifest import Manifest, stale_files
from analytics_sink.store import Store

COMPRESSION = "zstd"  # DuckDB, Spark and pyarrow all read it; smaller than snappy for these strings


@dataclass(frozen=True)
class FlushPlan:
    manifest: Manifest
    files: dict[str, bytes]  # key -> Parquet bytes, in the manifest's order

    @property
    def empty(self) -> bool:
        """Nothing lands (every record of the range was dead-lettered): only the commit is left."""
        return not self.files


def plan(unit: FlushUnit, schema: pa.Schema, *, schema_version: int) -> FlushPlan:
    metadata = {
        "notify.topic": unit.topic,
        "notify.partition": str(unit.partition),
        "notify.first_offset": str(unit.first),
        "notify.last_offset": str(unit.last),
        "notify.event_schema": f"notification_event.v{schema_version}",
    }
    files: dict[str, bytes] = {}
    for day in sorted(unit.by_date):
        table = to_table(schema, unit.topic, unit.partition, unit.by_date[day])
        files[file_key(day, unit.topic, unit.partition, unit.first)] = parquet_bytes(table, metadata)
    manifest = Manifest(unit.topic, unit.partition, unit.first, unit.last, tuple(files))
    return FlushPlan(manifest, files)


def parquet_bytes(table: pa.Table, metadata: dict[str, str]) -> bytes:
    """``table`` as one Parquet file, with ``metadata`` merged into the schema's key-value metadata."""
    merged = {**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}}
    out = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(merged), out, compression=COMPRESSION)
    return bytes(out.getvalue().to_pybytes())


def write(store: Store, flush: FlushPlan) -> None:
    """The manifest, then every file; raises ``StoreUnavailable`` (nothing to commit) on a failure."""
    if flush.empty:
        return  # nothing written, so nothing to undo: the manifest of the last flush stays
    where = flush.manifest
    store.put(manifest_key(where.topic, where.partition), flush.manifest.to_bytes())
    for key, data in flush.files.items():
        store.put(key, data)


def recover(store: Store, topic: str, partition: int, committed: int | None) -> tuple[str, ...]:
    """Delete the files of the partition's uncommitted flush, if it has one; returns their keys."""
    raw = store.get(manifest_key(topic, partition))
    manifest = Manifest.from_bytes(raw) if raw is not None else None
    stale = stale_files(manifest, committed)
    for key in stale:
        store.delete(key)
    return stale

"""Parquet columns from the Avro contract, and decoded events into an Arrow table (pure).

The columns are derived from the newest ``notification_event`` schema, never listed by hand, so a
new schema version adds its columns by itself; files written before it simply lack them, and
readers that unify by name (DuckDB ``union_by_name``, a pyarrow dataset with a unified schema) see
NULL there. The mapping:

=====================================  ======================================
Avro                                   Arrow / Parquet
=====================================  ======================================
string, enum (the symbol), uuid        string
int / long                             int32 / int64
float / double, boolean                float32 / float64, bool
bytes / fixed(n)                       binary / fixed_size_binary(n)
timestamp-millis / -micros             timestamp[ms, UTC] / timestamp[us, UTC]
local-timestamp-millis / -micros       timestamp[ms] / timestamp[us]
date, time-millis, time-micros         date32, time32[ms], time64[us]
decimal(p, s) on bytes or fixed        decimal128(p, s)
map<V>, array<V>, record               map<string, V>, list<V>, struct
["null", T]                            T, nullable
=====================================  ======================================

A union of two or more non-null branches has no column type and raises ``UnsupportedSchema``.
Each file also gets ``_topic``, ``_partition`` and ``_offset``: where the event was read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]  # pyarrow ships no type information

from analytics_sink.exceptions import UnsupportedSchema
from notify_core.codec import EVENT, AvroCodec, default_codec

# (offset, decoded event): what a flush holds, in offset order.
Entry = tuple[int, Mapping[str, Any]]

META_FIELDS = (
    pa.field("_topic", pa.string(), nullable=False),
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
)
META_NAMES = frozenset(f.name for f in META_FIELDS)
_PRIMITIVES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "bytes": pa.binary(),
}
_LOGICAL: dict[tuple[str, str], pa.DataType] = {
    ("long", "timestamp-millis"): pa.timestamp("ms", tz="UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", tz="UTC"),
    ("long", "local-timestamp-millis"): pa.timestamp("ms"),
    ("long", "local-timestamp-micros"): pa.timestamp("us"),
    ("int", "date"): pa.date32(),
    ("int", "time-millis"): pa.time32("ms"),
    ("long", "time-micros"): pa.time64("us"),
    ("string", "uuid"): pa.string(),
}


def event_schema(codec: AvroCodec | None = None) -> pa.Schema:
    """The Arrow schema of the sink's files: the newest ``notification_event``, then the meta columns."""
    return arrow_schema((codec or default_codec()).schema(EVENT))


def arrow_schema(avro_record: Mapping[str, Any]) -> pa.Schema:
    """One column per field of the (fastavro-parsed or plain JSON) Avro record, then ``META_FIELDS``."""
    if avro_record.get("type") != "record":
        raise UnsupportedSchema("the top level of an event schema must be a record")
    mapper = _Mapper(dict(avro_record.get("__named_schemas", {})))
    return pa.schema([*mapper.fields(avro_record), *META_FIELDS])


def to_table(schema: pa.Schema, topic: str, partition: int, entries: Sequence[Entry]) -> pa.Table:
    """``entries`` as a table of ``schema`` (from ``event_schema``): the event columns converted by
    pyarrow in one pass (half the time of a Python list per column, measured), then the sink's own."""
    events = pa.schema([f for f in schema if f.name not in META_NAMES])
    try:
        table = pa.Table.from_pylist([event for _, event in entries], schema=events)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise ValueError(f"events do not fit the columns: {exc}") from exc
    for field in events:
        # pyarrow fills a missing non-nullable value with null without a word, and names no column.
        nulls = table.column(field.name).null_count
        if not field.nullable and nulls:
            raise ValueError(f"column {field.name} is not nullable, and {nulls} rows have none")
    meta = {
        "_topic": pa.array([topic] * len(entries), type=schema.field("_topic").type),
        "_partition": pa.array([partition] * len(entries), type=schema.field("_partition").type),
        "_offset": pa.array([offset for offset, _ in entries], type=schema.field("_offset").type),
    }
    columns = [meta[f.name] if f.name in meta else table.column(f.name) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


class _Mapper:
    """Walks one schema, remembering named types so that a later reference by name resolves."""

    def __init__(self, named: dict[str, Mapping[str, Any]]) -> None:
        self._named = named
        self._expanding: set[int] = set()  # records being expanded: a recursive type has no columns
        self._namespace = ""  # the enclosing one: names inside a record default to its namespace

    def fields(self, record: Mapping[str, Any]) -> list[pa.Field]:
        if id(record) in self._expanding:
            raise UnsupportedSchema(f"record {record.get('name')!r} contains itself: no column type")
        full = self._register(record)
        self._expanding.add(id(record))
        enclosing, self._namespace = self._namespace, full.rpartition(".")[0]
        try:
            out = []
            for field in record["fields"]:
                kind, nullable = self.arrow_type(field["type"])
                out.append(pa.field(field["name"], kind, nullable=nullable))
            return out
        finally:
            self._expanding.discard(id(record))
            self._namespace = enclosing

    def arrow_type(self, avro: Any) -> tuple[pa.DataType, bool]:
        """(type, nullable) of one Avro type: a name, a union (list) or a complex type (dict)."""
        if isinstance(avro, list):
            branches = [b for b in avro if b != "null"]
            if len(branches) != 1:
                raise UnsupportedSchema(f"a union of {avro} has no single column type")
            kind, _ = self.arrow_type(branches[0])
            return kind, len(branches) < len(avro)
        if isinstance(avro, str):
            if avro == "null":
                return pa.null(), True
            if avro in _PRIMITIVES:
                return _PRIMITIVES[avro], False
            for name in (f"{self._namespace}.{avro}" if self._namespace else avro, avro):
                if name in self._named:
                    return self.arrow_type(self._named[name])
            raise UnsupportedSchema(f"unknown Avro type {avro!r}")
        if not isinstance(avro, Mapping):
            raise UnsupportedSchema(f"not an Avro type: {avro!r}")
        return self._complex(avro), False

    def _complex(self, avro: Mapping[str, Any]) -> pa.DataType:
        kind = avro["type"]
        logical = avro.get("logicalType")
        if kind in ("enum", "fixed"):
            self._register(avro)
        if logical == "decimal" and kind in ("bytes", "fixed"):
            return pa.decimal128(int(avro["precision"]), int(avro.get("scale", 0)))
        if isinstance(logical, str) and (kind, logical) in _LOGICAL:
            return _LOGICAL[(kind, logical)]
        if kind == "enum":
            return pa.string()
        if kind == "fixed":
            return pa.binary(int(avro["size"]))
        if kind == "record":
            return pa.struct(self.fields(avro))
        if kind == "array":
            item, nullable = self.arrow_type(avro["items"])
            return pa.list_(pa.field("element", item, nullable=nullable))
        if kind == "map":
            value, nullable = self.arrow_type(avro["values"])
            return pa.map_(pa.string(), pa.field("value", value, nullable=nullable))
        return self.arrow_type(kind)[0]  # {"type": "string"} and the like; unknown logical types

    def _register(self, avro: Mapping[str, Any]) -> str:
        """Remember a named type under its full name (the enclosing namespace when it has none)."""
        name = str(avro.get("name") or "")
        namespace = avro.get("namespace")
        if "." in name or not name:
            full = name
        elif isinstance(namespace, str):
            full = f"{namespace}.{name}" if namespace else name
        else:
            full = f"{self._namespace}.{name}" if self._namespace else name
        if full:
            self._named.setdefault(full, avro)
        return full

"""The sink's Parquet columns are derived from the Avro contract, never listed by hand."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pytest

from analytics_sink.columns import META_FIELDS, arrow_schema, event_schema, to_table
from analytics_sink.exceptions import UnsupportedSchema
from notify_core.codec import EVENT, SCHEMA_DIR, default_codec
from notify_core.events import event
from notify_core.topics import Channel

V1 = json.loads((SCHEMA_DIR / "notification_event.v1.avsc").read_text())
META = ["_topic", "_partition", "_offset"]


def test_every_v1_field_maps_to_its_column_type_and_nullability() -> None:
    """string and enum -> string, timestamp-millis -> timestamp[ms, UTC], int -> int32, double ->
    float64, map<string> -> map<string, string>; a ["null", T] union is nullable, the rest is not."""
    schema = arrow_schema(V1)
    expected = {
        "event_id": (pa.string(), False),
        "event_type": (pa.string(), False),
        "occurred_at": (pa.timestamp("ms", tz="UTC"), False),
        "notification_id": (pa.string(), False),
        "delivery_id": (pa.string(), True),
        "user_id": (pa.string(), False),
        "service": (pa.string(), True),
        "channel": (pa.string(), True),
        "category": (pa.string(), True),
        "reason": (pa.string(), True),
        "provider": (pa.string(), True),
        "provider_message_id": (pa.string(), True),
        "attempt": (pa.int32(), True),
        "latency_ms": (pa.float64(), True),
        "attributes": (pa.map_(pa.string(), pa.field("value", pa.string(), nullable=False)), False),
    }
    assert schema.names == [*expected, *META]
    for name, (kind, nullable) in expected.items():
        assert (schema.field(name).type, schema.field(name).nullable) == (kind, nullable), name
    assert [(f.name, f.type, f.nullable) for f in META_FIELDS] == [
        ("_topic", pa.string(), False),
        ("_partition", pa.int32(), False),
        ("_offset", pa.int64(), False),
    ]
    assert "date" not in schema.names  # the date is the directory, not a column


def test_a_new_schema_version_adds_its_columns_by_itself() -> None:
    """A v2-like schema (v1 plus optional fields) gets exactly those extra nullable columns, after
    v1's and before the meta columns; the newest installed version is what the sink uses."""
    v2 = copy.deepcopy(V1)
    v2["fields"] += [
        {"name": "template_id", "type": ["null", "string"], "default": None},
        {"name": "locale", "type": ["null", "string"], "default": None},
        {"name": "requested_at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    ]
    old, new = arrow_schema(V1), arrow_schema(v2)
    added = [f for f in new if f.name not in old.names]
    assert [(f.name, f.type, f.nullable) for f in added] == [
        ("template_id", pa.string(), True),
        ("locale", pa.string(), True),
        ("requested_at", pa.timestamp("ms", tz="UTC"), True),
    ]
    assert new.names[-3:] == META
    codec = default_codec()
    newest = [f["name"] for f in codec.schema(EVENT, codec.versions(EVENT)[-1])["fields"]]
    assert event_schema().names == [*newest, *META]


def test_named_types_nested_types_and_other_logical_types_map() -> None:
    """A named enum referenced again by name, records, arrays, bytes, decimals and dates all map."""
    record = {
        "type": "record",
        "name": "R",
        "namespace": "x",
        "fields": [
            {"name": "a", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
            {"name": "b", "type": ["null", "x.Kind"]},
            {"name": "c", "type": {"type": "array", "items": "long"}},
            {
                "name": "d",
                "type": {"type": "record", "name": "Inner", "fields": [{"name": "v", "type": "int"}]},
            },
            {"name": "e", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
            {"name": "f", "type": {"type": "int", "logicalType": "date"}},
            {"name": "g", "type": {"type": "fixed", "name": "Id", "size": 16}},
            {"name": "h", "type": ["null", "Id"]},
            {"name": "i", "type": "boolean"},
        ],
    }
    schema = arrow_schema(record)
    assert schema.field("a").type == pa.string()
    assert (schema.field("b").type, schema.field("b").nullable) == (pa.string(), True)
    assert schema.field("c").type == pa.list_(pa.field("element", pa.int64(), nullable=False))
    assert schema.field("d").type == pa.struct([pa.field("v", pa.int32(), nullable=False)])
    assert schema.field("e").type == pa.decimal128(9, 2)
    assert schema.field("f").type == pa.date32()
    assert schema.field("g").type == pa.binary(16)
    assert schema.field("h").type == pa.binary(16)
    assert schema.field("i").type == pa.bool_()


@pytest.mark.parametrize(
    "avro",
    [["null", "string", "long"], ["string", "long"], "no.such.Type"],
)
def test_a_type_without_a_column_mapping_is_refused(avro: Any) -> None:
    """A union of two non-null branches (or an unknown name) has no column type: said, not guessed."""
    record = {"type": "record", "name": "R", "fields": [{"name": "x", "type": avro}]}
    with pytest.raises(UnsupportedSchema):
        arrow_schema(record)


def test_decoded_events_become_rows_with_symbols_and_where_they_were_read() -> None:
    """Enums land as their symbols, timestamps in UTC milliseconds, maps as maps, absent fields as
    NULL, and each row says its topic, partition and offset."""
    codec = default_codec()
    at = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)
    raw = event(
        "SENT",
        occurred_at=at,
        notification_id="n-1",
        user_id="u-1",
        channel=Channel.EMAIL,
        attempt=2,
        latency_ms=12.5,
        attributes={"k": "v"},
    )
    decoded = codec.decode(codec.encode(EVENT, raw), EVENT)
    table = to_table(event_schema(), "p.events", 4, [(17, decoded)])
    [row] = table.to_pylist()
    assert row["event_type"] == "SENT"
    assert row["channel"] == "EMAIL"
    assert row["occurred_at"] == at
    assert row["attempt"] == 2
    assert row["latency_ms"] == 12.5
    assert row["attributes"] == [("k", "v")]
    assert row["delivery_id"] is None
    assert (row["_topic"], row["_partition"], row["_offset"]) == ("p.events", 4, 17)


def test_a_missing_required_value_is_refused_not_written_as_null() -> None:
    """A row without a value for a non-nullable column raises instead of writing a NULL there."""
    with pytest.raises(ValueError, match="event_id"):
        to_table(event_schema(), "p.events", 0, [(0, {"event_type": "SENT"})])

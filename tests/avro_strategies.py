"""Hypothesis strategies that build valid records for any parsed Avro schema (tests only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT = st.integers(min_value=-(2**31), max_value=2**31 - 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMPS = st.integers(min_value=0, max_value=7_258_118_400_000).map(
    lambda ms: EPOCH + timedelta(milliseconds=ms)
)


def records(schema: Any) -> st.SearchStrategy[Any]:
    """Values valid for ``schema`` (a fastavro-parsed schema)."""
    if isinstance(schema, list):
        return st.one_of(*(records(branch) for branch in schema))
    if isinstance(schema, str):
        return _primitive(schema)
    kind = schema["type"]
    if schema.get("logicalType") == "timestamp-millis":
        return TIMESTAMPS
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: records(f["type"]) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(records(schema["items"]), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), records(schema["values"]), max_size=4)
    return _primitive(kind)


def _primitive(kind: str) -> st.SearchStrategy[Any]:
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": INT,
        "long": LONG,
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        "string": st.text(max_size=20),
        "bytes": st.binary(max_size=20),
    }[kind]

"""The contract: every schema version reads data written by every other version of the same record.

Generic over ``schemas/``: with one version per record today, it checks each against itself; a new
``.v2.avsc`` is checked both ways (backward and forward) against every older one automatically.
"""

from __future__ import annotations

import json
import re
from itertools import product
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from notify_core.codec import SCHEMA_DIR, default_codec
from tests.avro_strategies import records

CODEC = default_codec()
PAIRS = [
    (name, writer, reader)
    for name in CODEC.names()
    for writer, reader in product(CODEC.versions(name), repeat=2)
]


@pytest.mark.parametrize(("name", "writer", "reader"), PAIRS)
def test_reader_version_reads_writer_version(name: str, writer: int, reader: int) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records(CODEC.schema(name, writer)))
    def check(record: dict[str, Any]) -> None:
        decoded = CODEC.decode(CODEC.encode(name, record, version=writer), name, version=reader)
        reader_fields = {f["name"] for f in CODEC.schema(name, reader)["fields"]}
        assert set(decoded) == reader_fields

    check()


@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.avsc")), ids=lambda p: p.name)
def test_schema_files_are_documented_and_named_by_version(path: Any) -> None:
    assert re.fullmatch(r"[a-z_]+\.v[1-9][0-9]*\.avsc", path.name)
    schema = json.loads(path.read_text())
    assert schema.get("doc"), "the record needs a doc"
    assert [f["name"] for f in schema["fields"] if not f.get("doc")] == []


@pytest.mark.parametrize("name", CODEC.names())
def test_record_name_is_stable_across_versions(name: str) -> None:
    assert len({CODEC.schema(name, v)["name"] for v in CODEC.versions(name)}) == 1

"""The one Avro codec: single-object encoding, writer schema found by fingerprint.

Wire format (Avro specification, "Single object encoding")::

    C3 01 | CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form (8 bytes, LE) | body

Every ``schemas/<name>.v<N>.avsc`` is loaded once (the ``schemas`` package: the repository's folder,
or the installed copy inside the wheel). ``encode`` writes with the newest version of a
schema (or a pinned one); ``decode`` looks the writer schema up by fingerprint among every version
and resolves it to the reader's version, so old data stays readable. Anything that is not such a
record raises ``DecodeError``; a record that does not fit its schema raises ``EncodeError``.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
from fastavro.schema import SchemaParseException, UnknownType, to_parsing_canonical_form

from notify_core.exceptions import DecodeError, NotifyError, SchemaError
from notify_core.resources import package_dir

REQUEST = "notification_request"
CHANNEL_MESSAGE = "channel_message"
EVENT = "notification_event"
DEAD_LETTER = "dead_letter"
USER_CHANGE = "user_change"

SCHEMA_DIR = package_dir("schemas")
CONTENT_TYPE = "application/vnd.apache.avro+binary; encoding=single-object"
# The Kafka headers every record we produce carries (confluent-kafka's header list shape).
CONTENT_TYPE_HEADERS: list[tuple[str, str | bytes | None]] = [("content-type", CONTENT_TYPE.encode())]
MARKER = b"\xc3\x01"
HEADER_SIZE = len(MARKER) + 8
_FILE_NAME = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")


class EncodeError(NotifyError, ValueError):
    """A record that does not fit its schema."""


def fingerprint_of(schema: dict[str, Any]) -> bytes:
    """The 8 little-endian bytes identifying a (parsed) schema on the wire: its CRC-64-AVRO."""
    return _crc64_avro_bytes(to_parsing_canonical_form(schema))


def crc64_avro(data: bytes) -> int:
    """The CRC-64-AVRO (Rabin) fingerprint of UTF-8 text, such as a Parsing Canonical Form, as a number."""
    return int.from_bytes(_crc64_avro_bytes(data.decode()), "little")


def _crc64_avro_bytes(text: str) -> bytes:
    # fastavro's answer is the hex of the fingerprint's 8 little-endian bytes (the Java implementation's
    # order, which the single-object encoding uses).
    return bytes.fromhex(fastavro.schema.fingerprint(text, "CRC-64-AVRO"))


@dataclass(frozen=True)
class _Schema:
    name: str
    version: int
    parsed: dict[str, Any]
    full_name: str
    fingerprint: bytes


class AvroCodec:
    """Encoder/decoder for every schema version in ``schema_dir``."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._by_version: dict[tuple[str, int], _Schema] = {}
        self._by_fingerprint: dict[bytes, _Schema] = {}
        self._latest: dict[str, int] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            self._load(path)
        if not self._latest:
            raise SchemaError(f"no schemas found in {schema_dir}")

    def _load(self, path: Path) -> None:
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise SchemaError(f"{path.name}: schema files must be named <name>.v<N>.avsc")
        name, version = match["name"], int(match["version"])
        try:
            parsed = fastavro.parse_schema(json.loads(path.read_text()))
        except (ValueError, SchemaParseException, UnknownType) as exc:
            raise SchemaError(f"{path.name}: {exc}") from exc
        if not isinstance(parsed, dict) or parsed.get("type") != "record":
            raise SchemaError(f"{path.name}: the top level must be a record")
        entry = _Schema(name, version, parsed, str(parsed["name"]), fingerprint_of(parsed))
        clash = self._by_fingerprint.get(entry.fingerprint)
        if clash is not None:
            raise SchemaError(f"{path.name} is identical to {clash.name}.v{clash.version}.avsc")
        self._by_version[(name, version)] = entry
        self._by_fingerprint[entry.fingerprint] = entry
        self._latest[name] = max(version, self._latest.get(name, 0))

    def _get(self, name: str, version: int | None) -> _Schema:
        if name not in self._latest:
            raise SchemaError(f"unknown schema {name!r}; known: {', '.join(sorted(self._latest))}")
        wanted = self._latest[name] if version is None else version
        try:
            return self._by_version[(name, wanted)]
        except KeyError:
            raise SchemaError(f"schema {name!r} has no version {wanted}") from None

    def versions(self, name: str) -> list[int]:
        return sorted(v for n, v in self._by_version if n == name)

    def names(self) -> list[str]:
        return sorted(self._latest)

    def schema(self, name: str, version: int | None = None) -> dict[str, Any]:
        return self._get(name, version).parsed

    def fingerprint(self, name: str, version: int | None = None) -> bytes:
        return self._get(name, version).fingerprint

    def encode(self, name: str, record: Mapping[str, Any], *, version: int | None = None) -> bytes:
        schema = self._get(name, version)
        out = io.BytesIO()
        out.write(MARKER)
        out.write(schema.fingerprint)
        try:
            fastavro.schemaless_writer(out, schema.parsed, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"record does not fit {name}.v{schema.version}: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes, name: str, *, version: int | None = None) -> dict[str, Any]:
        reader = self._get(name, version)
        if len(data) < HEADER_SIZE:
            raise DecodeError(f"{len(data)} bytes is too short for an Avro single-object record")
        if data[:2] != MARKER:
            raise DecodeError(f"not an Avro single-object record (starts with {data[:2].hex()}, not c301)")
        writer = self._by_fingerprint.get(data[2:HEADER_SIZE])
        if writer is None:
            raise DecodeError(f"unknown writer schema fingerprint {data[2:HEADER_SIZE].hex()}")
        if writer.full_name != reader.full_name:
            raise DecodeError(f"record is a {writer.full_name}, expected {reader.full_name}")
        body = io.BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            if writer is reader:
                record = fastavro.schemaless_reader(body, writer.parsed, None)
            else:
                record = fastavro.schemaless_reader(body, writer.parsed, reader.parsed)
        except (
            Exception
        ) as exc:  # fastavro raises many kinds on garbage: EOFError, ValueError, IndexError, ...
            raise DecodeError(
                f"corrupt {writer.name}.v{writer.version} body: {type(exc).__name__}: {exc}"
            ) from exc
        if body.tell() != len(data):
            raise DecodeError(f"{len(data) - body.tell()} unexpected bytes after the {writer.name} record")
        if not isinstance(record, dict):
            raise DecodeError(f"{writer.name} body did not decode to a record")
        return record


@functools.cache
def default_codec() -> AvroCodec:
    """The codec for the installed ``schemas`` package, loaded once per process."""
    return AvroCodec()

"""Property tests: every schema round-trips any valid record; random bytes only ever raise DecodeError."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notify_core.codec import default_codec
from notify_core.exceptions import DecodeError
from tests.avro_strategies import records

CODEC = default_codec()
NAMES = CODEC.names()


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name: str) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records(CODEC.schema(name)))
    def check(record: dict[str, Any]) -> None:
        assert CODEC.decode(CODEC.encode(name, record), name) == record

    check()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(NAMES))
def test_random_bytes_decode_or_raise_decode_error(data: bytes, name: str) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode(data, name)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAMES), st.binary(max_size=60))
def test_valid_header_with_random_body_only_raises_decode_error(name: str, body: bytes) -> None:
    data = b"\xc3\x01" + CODEC.fingerprint(name) + body
    with contextlib.suppress(DecodeError):
        CODEC.decode(data, name)

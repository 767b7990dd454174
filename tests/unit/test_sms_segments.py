"""SMS parts: GSM-7 vs UCS-2 and the concatenation limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.router.sms_segments import GSM_BASIC, segments


@pytest.mark.parametrize(
    ("text", "encoding", "units", "parts"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),
        ("€" * 81, "GSM-7", 162, 2),
        ("ж" * 70, "UCS-2", 70, 1),
        ("ж" * 71, "UCS-2", 71, 2),
        ("😀" * 35, "UCS-2", 70, 1),
        ("a" * 130 + "😀", "UCS-2", 132, 2),
    ],
)
def test_known_vectors(text: str, encoding: str, units: int, parts: int) -> None:
    info = segments(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, parts)


@given(st.text(alphabet=sorted(GSM_BASIC), max_size=600))
def test_gsm_text_stays_gsm_and_follows_the_formula(text: str) -> None:
    info = segments(text)
    assert info.encoding == "GSM-7"
    expected = 0 if not text else 1 if len(text) <= 160 else -(-len(text) // 153)
    assert info.segments == expected


@given(st.text(max_size=300), st.characters())
def test_appending_never_needs_fewer_parts(text: str, extra: str) -> None:
    assert segments(text + extra).segments >= segments(text).segments

"""How many SMS parts a text needs (pure).

GSM 03.38 7-bit text fits 160 septets in one part, 153 per part when concatenated; characters of the
extension table take two septets. Anything else is sent as UCS-2: 70 UTF-16 code units in one part,
67 per part (an emoji is two units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SegmentInfo:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int  # 0 for an empty text


def segments(text: str) -> SegmentInfo:
    if all(c in GSM_BASIC or c in GSM_EXTENSION for c in text):
        units = sum(2 if c in GSM_EXTENSION else 1 for c in text)
        return SegmentInfo("GSM-7", units, _parts(units, single=160, multi=153))
    # surrogatepass: a lone surrogate is one code unit, not a crash (counting must never raise).
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    return SegmentInfo("UCS-2", units, _parts(units, single=70, multi=67))


def _parts(units: int, *, single: int, multi: int) -> int:
    if units == 0:
        return 0
    if units <= single:
        return 1
    return -(-units // multi)

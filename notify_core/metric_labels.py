"""Label values from open sources, kept to a bounded set (pure).

Most labels are closed by construction (a channel, a provider, an outcome of our own). Reasons are
not quite: a dead letter's ``error_type`` or a retry's reason is often the provider's own code
(APNs ``reason``, FCM ``error.status``, an SNS ``Error.Code``, an SMTP reply code), passed through
``classify`` as the provider sent it, so a provider (or a sandbox) could send anything.
``BoundedValues`` lets through only what looks like a code (a word of letters, digits, ``_`` and
``.``, at most 48 characters, no run of 4 digits, not a long hex string; or a 3-digit status) and at
most ``limit`` distinct values per process; anything else is ``other``. An address, a phone number,
a device token or an id can therefore never become a label value, and a misbehaving provider can add
at most ``limit`` series.
"""

from __future__ import annotations

import re

OTHER = "other"
NONE = ""  # an outcome without a reason: Prometheus reads an empty label as no label
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,47}|[1-5][0-9]{2}")
_DIGIT_RUN = re.compile(r"[0-9]{4}")
_HEX = re.compile(r"[0-9A-Fa-f]{16,}")


def looks_like_code(value: str) -> bool:
    """True for an error code or a status (``BadDeviceToken``, ``attempts_exhausted``, ``550``)."""
    return (
        _CODE.fullmatch(value) is not None
        and _DIGIT_RUN.search(value) is None
        and _HEX.fullmatch(value) is None
    )


class BoundedValues:
    """The first ``limit`` distinct code-like values pass as they are; the rest become ``other``."""

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if not value:
            return NONE
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit or not looks_like_code(value):
            return OTHER
        self._seen.add(value)
        return value

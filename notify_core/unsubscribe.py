"""Signed one-click unsubscribe links (RFC 8058): pure functions, no I/O.

A token names who unsubscribes from what: ``(user_id, category, channel)``. It is
``v1.<payload>.<mac>`` where ``payload`` is the URL-safe base64 (no padding) of the compact JSON array
``[user_id, category, channel]`` and ``mac`` the URL-safe base64 of HMAC-SHA256 over
``"v1." + payload`` under the secret. Only the holder of the secret can mint one, so the POST
endpoint can act on it without a login.

``verify`` accepts exactly the strings ``sign`` produces: it decodes the fields, signs them again and
compares the whole token in constant time. That also rejects non-canonical base64 spellings, whose
unused low bits a lenient decoder would ignore, so changing any single character always fails.
Tokens carry no expiry on purpose: a link in an old mail must keep working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from urllib.parse import quote

from notify_core.exceptions import NotifyError

VERSION = "v1"
MAX_TOKEN_LENGTH = 2048  # far above a real token; bounds the work an attacker can ask for


class InvalidUnsubscribeToken(NotifyError, ValueError):
    """A token that was tampered with, truncated, signed under another secret, or is not a token."""


def sign(user_id: str, category: str, channel: str, secret: str | bytes) -> str:
    """The token for ``(user_id, category, channel)``: URL-safe, deterministic for the same inputs."""
    fields = [user_id, category, channel]
    if not all(isinstance(f, str) for f in fields):
        raise TypeError("user_id, category and channel must be strings")
    # ensure_ascii keeps the payload bytes independent of how a caller normalises Unicode.
    payload = _b64(json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii"))
    return f"{VERSION}.{payload}.{_mac(payload, secret)}"


def verify(token: str, secret: str | bytes) -> tuple[str, str, str]:
    """``(user_id, category, channel)`` of a token ``sign`` made under ``secret``.

    Raises ``InvalidUnsubscribeToken`` for anything else; the message never echoes the token.
    """
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidUnsubscribeToken("malformed unsubscribe token")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise InvalidUnsubscribeToken("malformed unsubscribe token")
    fields = _decode_fields(parts[1])
    expected = sign(*fields, secret)
    if not hmac.compare_digest(expected.encode("ascii"), token.encode("ascii")):
        raise InvalidUnsubscribeToken("unsubscribe token signature does not match")
    return fields


def unsubscribe_url(base_url: str, user_id: str, category: str, channel: str, secret: str | bytes) -> str:
    """``<base_url>/<token>``: the URL a List-Unsubscribe header (and the POST endpoint) uses."""
    token = sign(user_id, category, channel, secret)
    return f"{base_url.rstrip('/')}/{quote(token, safe='')}"


def _mac(payload: str, secret: str | bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the unsubscribe secret must not be empty")
    return _b64(hmac.new(key, f"{VERSION}.{payload}".encode("ascii"), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode_fields(payload: str) -> tuple[str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        fields = json.loads(raw.decode("ascii"))
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidUnsubscribeToken("malformed unsubscribe token") from None
    if not (isinstance(fields, list) and len(fields) == 3 and all(isinstance(f, str) for f in fields)):
        raise InvalidUnsubscribeToken("malformed unsubscribe token")
    return fields[0], fields[1], fields[2]

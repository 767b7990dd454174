"""Signed engagement-tracking tokens (clicks, opens, push opens, unsubscribes): pure, no I/O.

A token names one delivery (``TrackedDelivery``) and, for a click, the URL it leads to. It is an
itsdangerous ``URLSafeTimedSerializer`` string, ``<payload>.<timestamp>.<signature>``: the payload is
the URL-safe base64 (zlib-compressed, with a leading ``.``, when that is shorter) of compact JSON with
one-letter keys, so links stay short::

    {"d": delivery_id, "n": notification_id, "u": user_id, "s": service,
     "c": channel ("ios", "android", "sms", "email"), "k": category, "l": url (clicks only)}

the timestamp is the signing time (whole seconds, base64), and the signature HMAC-SHA256 over both.

- Each ``Purpose`` has its own salt, so a token for one purpose never verifies as another; UNSUBSCRIBE
  is signed under ``unsubscribe_secret``, the others under ``tracking_secret``.
- Rotation: the current secret signs; it and every previous one verify.
- ``verify`` checks the signature first, then the age against the purpose's max age (settings), and
  then the payload's shape. Every refusal is ``InvalidToken`` with ``reason`` ``malformed``,
  ``bad_signature`` or ``expired``; its message never echoes the token.
- The URL paths the HTTP API serves: ``/t/click/<token>``, ``/t/open/<token>``,
  ``/t/unsubscribe/<token>`` (push opens are reported by the app, with the token from the push data).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote

from itsdangerous import BadData, BadPayload, BadSignature, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode, want_bytes
from yarl import URL

from notify_core.exceptions import ConfigError, NotifyError
from notify_core.settings import Settings
from notify_core.topics import Channel

MAX_TOKEN_LENGTH = 4096  # far above a real token (a long click URL included); bounds a verifier's work
# A token signed by a host whose clock runs ahead of ours is still good for this long.
MAX_CLOCK_SKEW_S = 300

Reason = Literal["malformed", "bad_signature", "expired"]

# What ``sign`` can produce: [.]payload.timestamp.signature, URL-safe base64 without padding.
_SHAPE = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_FIELDS = {"d", "n", "u", "s", "c", "k"}
_CHANNELS = frozenset(c.value for c in Channel)


class Purpose(StrEnum):
    CLICK = "click"
    OPEN = "open"
    PUSH_OPEN = "push_open"
    UNSUBSCRIBE = "unsubscribe"


class InvalidToken(NotifyError, ValueError):
    """A token that is not one we signed for this purpose, was tampered with, or is too old."""

    def __init__(self, reason: Reason, purpose: Purpose) -> None:
        super().__init__(f"invalid {purpose.value} token: {reason.replace('_', ' ')}")
        self.reason: Reason = reason
        self.purpose = purpose


@dataclass(frozen=True)
class TrackedDelivery:
    """The delivery a token speaks for; ``url`` is the click's destination (clicks only)."""

    delivery_id: str
    notification_id: str
    user_id: str
    service: str
    channel: Channel
    category: str
    url: str | None = None


def _default_max_ages() -> dict[Purpose, int]:
    # The settings' own defaults, so the numbers live in one place.
    fields = Settings.model_fields
    return {
        Purpose.CLICK: int(fields["click_token_max_age_s"].default),
        Purpose.OPEN: int(fields["open_token_max_age_s"].default),
        Purpose.PUSH_OPEN: int(fields["push_token_max_age_s"].default),
        Purpose.UNSUBSCRIBE: int(fields["unsubscribe_token_max_age_s"].default),
    }


# Keys derived from (secret, salt, derivation, digest): itsdangerous derives one for every token it
# signs or checks, an HMAC each time; the router signs several per e-mail (seen under py-spy). Bounded:
# a few secrets (current and rotated) times the purposes' salts.
_DERIVED: OrderedDict[tuple[bytes, bytes, str, Any], bytes] = OrderedDict()
_DERIVED_MAX = 64


class _ClockedSigner(TimestampSigner):
    """itsdangerous' timestamp signer with an injected clock (tests sign "in the past"), deriving each
    key once per process."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        secret = bytes(self.secret_keys[-1] if secret_key is None else want_bytes(secret_key))
        found = (secret, bytes(self.salt), self.key_derivation, self.digest_method)
        key = _DERIVED.get(found)
        if key is None:
            key = _DERIVED[found] = super().derive_key(secret)
            while len(_DERIVED) > _DERIVED_MAX:
                _DERIVED.popitem(last=False)
        return key

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class TrackingSigner:
    """Signs and verifies tokens for every ``Purpose``; thread-safe (holds no mutable state).

    ``tracking_secrets`` and ``unsubscribe_secrets`` list the current key first, then the previous
    ones still accepted. ``base_url`` is where the signed links point (``public_base_url``).
    ``clock`` (epoch seconds) stamps new tokens and is "now" for ``verify``.
    """

    def __init__(
        self,
        *,
        tracking_secrets: Sequence[str | bytes],
        unsubscribe_secrets: Sequence[str | bytes],
        max_age_s: Mapping[Purpose, int] | None = None,
        base_url: str = str(Settings.model_fields["public_base_url"].default),
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, secrets in (("tracking", tracking_secrets), ("unsubscribe", unsubscribe_secrets)):
            if not secrets or not all(secrets):
                raise ConfigError(f"the {name} secrets must be a non-empty list of non-empty keys")
        self.base_url = base_url.rstrip("/")
        self._max_age = _default_max_ages() | dict(max_age_s or {})
        self._clock = clock
        self._serializers = {
            purpose: URLSafeTimedSerializer(
                _keys(unsubscribe_secrets if purpose is Purpose.UNSUBSCRIBE else tracking_secrets),
                salt=f"notify.tracking.{purpose.value}",
                # ASCII JSON: any str (even a lone surrogate) round-trips, and the bytes never depend
                # on how a caller normalised Unicode.
                serializer_kwargs={"ensure_ascii": True},
                signer=_ClockedSigner,
                signer_kwargs={"digest_method": hashlib.sha256, "clock": clock},
            )
            for purpose in Purpose
        }

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], float] = time.time) -> TrackingSigner:
        return cls(
            tracking_secrets=[
                s.get_secret_value() for s in (settings.tracking_secret, *settings.tracking_previous_secrets)
            ],
            unsubscribe_secrets=[
                s.get_secret_value()
                for s in (settings.unsubscribe_secret, *settings.unsubscribe_previous_secrets)
            ],
            max_age_s={
                Purpose.CLICK: settings.click_token_max_age_s,
                Purpose.OPEN: settings.open_token_max_age_s,
                Purpose.PUSH_OPEN: settings.push_token_max_age_s,
                Purpose.UNSUBSCRIBE: settings.unsubscribe_token_max_age_s,
            },
            base_url=settings.public_base_url,
            clock=clock,
        )

    def max_age_s(self, purpose: Purpose) -> int:
        return self._max_age[purpose]

    def sign(self, purpose: Purpose, delivery: TrackedDelivery) -> str:
        """The token for ``delivery``; URL-safe (letters, digits, ``-``, ``_``, ``.``).

        Raises ``ValueError`` when a click has no ``url`` (or another purpose has one), and when the
        token would be over ``MAX_TOKEN_LENGTH`` (a very long click URL): ``verify`` would refuse it.
        """
        if (purpose is Purpose.CLICK) != (delivery.url is not None):
            raise ValueError("a click token needs the url, and only a click token carries one")
        payload: dict[str, str] = {
            "d": delivery.delivery_id,
            "n": delivery.notification_id,
            "u": delivery.user_id,
            "s": delivery.service,
            "c": Channel(delivery.channel).value,
            "k": delivery.category,
        }
        if delivery.url is not None:
            payload["l"] = delivery.url
        token = self._serializers[purpose].dumps(payload)
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError(f"the {purpose.value} token would be over {MAX_TOKEN_LENGTH} characters")
        return token

    def verify(self, purpose: Purpose, token: str, *, now: float | None = None) -> TrackedDelivery:
        """The delivery ``token`` names, if this signer made it for ``purpose`` within its max age.

        ``now`` (epoch seconds) overrides the clock. Raises ``InvalidToken`` for anything else.
        """
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not _SHAPE.fullmatch(token):
            raise InvalidToken("malformed", purpose)
        signature = token.rpartition(".")[2]
        # Base64's last character carries unused low bits that the decoder ignores: only the one
        # spelling sign() writes is accepted, so changing any character of a token always fails.
        if not _canonical_base64(signature):
            raise InvalidToken("bad_signature", purpose)
        try:
            payload, signed_at = self._serializers[purpose].loads(token, return_timestamp=True)
        except BadPayload:  # signed by us, yet not our JSON: cannot happen unless a key leaked
            raise InvalidToken("malformed", purpose) from None
        except BadSignature:  # includes a bad timestamp
            raise InvalidToken("bad_signature", purpose) from None
        except BadData:
            raise InvalidToken("malformed", purpose) from None
        age = (self._clock() if now is None else now) - signed_at.timestamp()
        if age > self._max_age[purpose] or age < -MAX_CLOCK_SKEW_S:
            raise InvalidToken("expired", purpose)
        return _delivery(payload, purpose)


def _keys(secrets: Sequence[str | bytes]) -> list[bytes]:
    # itsdangerous signs with the LAST key and tries them all: oldest first, the current one last.
    return [k.encode("utf-8") if isinstance(k, str) else k for k in reversed(secrets)]


def _canonical_base64(text: str) -> bool:
    try:
        return base64_encode(base64_decode(text)).decode("ascii") == text
    except BadData:  # a length no base64 has
        return False


def _delivery(payload: object, purpose: Purpose) -> TrackedDelivery:
    expected = _FIELDS | {"l"} if purpose is Purpose.CLICK else _FIELDS
    if (
        not isinstance(payload, dict)
        or set(payload) != expected
        or not all(isinstance(v, str) for v in payload.values())
        or payload["c"] not in _CHANNELS
    ):
        raise InvalidToken("malformed", purpose)
    return TrackedDelivery(
        delivery_id=payload["d"],
        notification_id=payload["n"],
        user_id=payload["u"],
        service=payload["s"],
        channel=Channel(payload["c"]),
        category=payload["k"],
        url=payload.get("l"),
    )


def _url(base: str, kind: str, token: str) -> str:
    return f"{base.rstrip('/')}/t/{kind}/{quote(token, safe='')}"  # quote: a no-op for our tokens


def is_redirectable(url: str) -> bool:
    """An absolute http(s) URL aiohttp can put in a Location header (a port over 65535, say, it
    cannot): checked before the event, so a bad one produces nothing."""
    try:
        parsed = URL(url)
        return parsed.scheme in ("http", "https") and bool(parsed.host) and parsed.port is not None
    except (ValueError, TypeError):
        return False


def click_url(base: str, token: str) -> str:
    """``{base}/t/click/{token}``: redirects to the token's URL and records the click."""
    return _url(base, "click", token)


def open_pixel_url(base: str, token: str) -> str:
    """``{base}/t/open/{token}``: a 1x1 image that records the open."""
    return _url(base, "open", token)


def unsubscribe_url(base: str, token: str) -> str:
    """``{base}/t/unsubscribe/{token}``: the RFC 8058 one-click target."""
    return _url(base, "unsubscribe", token)

"""Service API keys: minted here, shown once, kept in PostgreSQL as a SHA-256 digest only.

A key reads ``nfy_<key_id>_<secret>``: ``key_id`` (12 hex digits) is the readable, public part that
finds the row; ``secret`` is 32 random bytes (256 bits), URL-safe base64. Verification finds the
row by ``key_id`` and compares digests in constant time, so neither a lookup nor a comparison
tells an attacker how much of a guess was right. Verified keys are cached for
``api_key_cache_s``: a revocation takes effect within that.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from notify_core.db.cache import TtlCache
from notify_core.db.connect import pooled
from notify_core.exceptions import NotifyError

PREFIX = "nfy"
_TOKEN = re.compile(r"^nfy_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Scope(StrEnum):
    SEND = "send"
    CONTACTS = "contacts"
    STATUS = "status"


_SCOPES = frozenset(s.value for s in Scope)


class InvalidKey(NotifyError, ValueError):
    """A key that is malformed, unknown or revoked (one error: the caller learns nothing more)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    service: str
    scopes: frozenset[Scope]
    rate_per_s: float | None = None
    burst: int | None = None
    description: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None


def mint() -> tuple[str, str]:
    """A new ``(key_id, token)``: the token is what the service is given, once."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def key_id_of(token: str) -> str:
    """The public part of a well-formed token; ``InvalidKey`` for anything else."""
    match = _TOKEN.fullmatch(token) if token.isascii() else None
    if match is None:
        raise InvalidKey("not an API key")
    return match.group("key_id")


def check_service(service: str) -> str:
    if not _SERVICE.match(service):
        raise ValueError(
            "service must be 1-64 characters of a-z, 0-9, '.', '_' and '-', starting alphanumeric"
        )
    return service


class KeyStore:
    """API keys in PostgreSQL. Thread-safe; the API calls it from worker threads."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]], *, cache_s: float = 5.0) -> None:
        self._pool = pool
        self._verified: TtlCache[str, ApiKey] = TtlCache(10_000, cache_s)

    def create(
        self,
        service: str,
        scopes: Sequence[Scope],
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
        description: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key and return it with its token (the only time the token exists)."""
        check_service(service)
        if not scopes:
            raise ValueError("a key needs at least one scope")
        key_id, token = mint()
        with self._connection() as conn:
            row = conn.execute(
                "insert into api_keys (key_id, service, scopes, digest, rate_per_s, burst, description)"
                " values (%s, %s, %s, %s, %s, %s, %s) returning created_at",
                (key_id, service, sorted(scopes), digest(token), rate_per_s, burst, description),
            ).fetchone()
        assert row is not None
        key = ApiKey(key_id, service, frozenset(scopes), rate_per_s, burst, description, row[0])
        return key, token

    def cached(self, token: str) -> ApiKey | None:
        """The key if it was verified within the cache time (no I/O, for the event loop)."""
        return self._verified.get(digest(token).hex()) if token.isascii() else None

    def verify(self, token: str) -> ApiKey:
        """The live key ``token`` is, or ``InvalidKey``."""
        key_id = key_id_of(token)
        wanted = digest(token)
        cached = self._verified.get(wanted.hex())
        if cached is not None:
            return cached
        with self._connection() as conn:
            row = conn.execute(
                "select key_id, service, scopes, rate_per_s, burst, description, created_at, revoked_at,"
                " digest from api_keys where key_id = %s",
                (key_id,),
            ).fetchone()
        # Compared even when the row is missing, so both paths take the same time.
        stored = bytes(row[8]) if row is not None else b"\0" * 32
        if not hmac.compare_digest(stored, wanted) or row is None or row[7] is not None:
            raise InvalidKey("unknown or revoked API key")
        key = _key(row)
        self._verified.put(wanted.hex(), key)
        return key

    def list(self, service: str | None = None) -> list[ApiKey]:
        with self._connection() as conn:
            rows = conn.execute(
                "select key_id, service, scopes, rate_per_s, burst, description, created_at, revoked_at"
                " from api_keys where %s::text is null or service = %s order by created_at",
                (service, service),
            ).fetchall()
        return [_key(row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; ``False`` if there is no live key with that id."""
        with self._connection() as conn:
            row = conn.execute(
                "update api_keys set revoked_at = now() where key_id = %s and revoked_at is null"
                " returning key_id",
                (key_id,),
            ).fetchone()
        return row is not None

    def _connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        return pooled(self._pool, "API key store")


def _key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(
        key_id=row[0],
        service=row[1],
        scopes=frozenset(Scope(s) for s in row[2] if s in _SCOPES),
        rate_per_s=row[3],
        burst=row[4],
        description=row[5],
        created_at=row[6],
        revoked_at=row[7],
    )

"""Idempotency-Key records (IETF httpapi idempotency-key draft): the first body sent with a key
wins; the same body again is a replay (same ids, produced again, deduplicated by the router);
another body with that key is refused with 422, so it is never silently dropped as a duplicate."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from notify_core.db.connect import pooled


class Seen(StrEnum):
    NEW = "new"
    REPLAY = "replay"
    CONFLICT = "conflict"


def remember(
    pool: ConnectionPool[psycopg.Connection[Any]], service: str, key: str, fingerprint: bytes
) -> Seen:
    with pooled(pool, "idempotency record") as conn:
        row = conn.execute(
            "insert into api_idempotency (service, idem_key, fingerprint) values (%s, %s, %s)"
            " on conflict (service, idem_key) do nothing returning 1",
            (service, key, fingerprint),
        ).fetchone()
        if row is not None:
            return Seen.NEW
        first = conn.execute(
            "select fingerprint from api_idempotency where service = %s and idem_key = %s", (service, key)
        ).fetchone()
    return Seen.REPLAY if first is not None and bytes(first[0]) == fingerprint else Seen.CONFLICT


def prune(pool: ConnectionPool[psycopg.Connection[Any]], older_than_s: int, limit: int) -> int:
    """Forget keys older than ``older_than_s`` (the router's dedupe window: after it a replay
    would not be deduplicated anyway), at most ``limit`` rows a call."""
    with pooled(pool, "idempotency prune") as conn:
        cur = conn.execute(
            "delete from api_idempotency where ctid in (select ctid from api_idempotency"
            " where created_at < now() - make_interval(secs => %s) order by created_at limit %s)",
            (older_than_s, limit),
        )
        return cur.rowcount

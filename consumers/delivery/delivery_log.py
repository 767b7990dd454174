"""The delivery log in PostgreSQL: claim a delivery before the provider call, mark it after.

A claim is a lease. It is refused when the delivery already ended (sent, failed, dead-lettered) and
deferred while another worker's lease runs (a second copy of a record in flight is not sent twice).
A worker restarted with the same owner id takes its own leases back at start-up (``release_own``),
so a crash does not stall its deliveries for a whole lease. A send whose outcome was never marked
(the worker died mid-call) is in doubt and is sent again: providers' idempotency handles
(``apns-id``, ``Message-ID``) cover that window, and nothing marked sent is ever sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from notify_core.exceptions import DatabaseError


class ClaimResult(StrEnum):
    CLAIMED = "claimed"
    DONE = "done"  # sent, failed or dead-lettered already: skip
    BUSY = "busy"  # another live worker holds the lease: try again after it lapses


@dataclass(frozen=True)
class Claim:
    result: ClaimResult
    attempts: int = 0  # attempts including this one, when claimed
    busy_until: datetime | None = None
    first_failed_at: datetime | None = None


class DeliveryLog:
    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]], owner: str, lease: timedelta):
        self._pool, self._owner, self._lease = pool, owner, lease

    async def claim(self, delivery_id: str, notification_id: str, channel: str, now: datetime) -> Claim:
        row = await self._one(
            "insert into delivery_log as d (delivery_id, notification_id, channel, status, attempts,"
            " claimed_by, claimed_until, updated_at) values (%(id)s, %(nid)s, %(ch)s, 'sending', 1,"
            " %(owner)s, %(until)s, %(now)s)"
            " on conflict (delivery_id) do update set status = 'sending', attempts = d.attempts + 1,"
            " claimed_by = excluded.claimed_by, claimed_until = excluded.claimed_until, updated_at = %(now)s"
            " where d.status in ('sending', 'retrying')"
            " and (d.claimed_until is null or d.claimed_until < %(now)s)"
            " returning attempts, first_failed_at",
            {
                "id": delivery_id,
                "nid": notification_id,
                "ch": channel,
                "owner": self._owner,
                "until": now + self._lease,
                "now": now,
            },
        )
        if row is not None:
            return Claim(ClaimResult.CLAIMED, attempts=row[0], first_failed_at=row[1])
        current = await self._one(
            "select status, claimed_until from delivery_log where delivery_id = %s", (delivery_id,)
        )
        if current is not None and current[0] in ("sending", "retrying"):
            return Claim(ClaimResult.BUSY, busy_until=current[1])
        return Claim(ClaimResult.DONE)

    async def release_own(self) -> int:
        """At start-up: what a previous run of this owner left claimed is claimable again."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "update delivery_log set claimed_until = null where claimed_by = %s and status = 'sending'"
                " and claimed_until is not null",
                (self._owner,),
            )
            return cur.rowcount

    async def mark_sent(self, delivery_id: str, provider_message_id: str | None, now: datetime) -> None:
        await self._exec(
            "update delivery_log set status = 'sent', provider_message_id = %s, sent_at = %s,"
            " updated_at = %s, claimed_until = null where delivery_id = %s",
            (provider_message_id, now, now, delivery_id),
        )

    async def mark_failed(self, delivery_id: str, status: str, error: str, now: datetime) -> None:
        """``status``: 'retrying' (the lease is released for the retry copy), 'failed' or 'dead_lettered'."""
        await self._exec(
            "update delivery_log set status = %s, last_error = %s, updated_at = %s, claimed_until = null,"
            " first_failed_at = coalesce(first_failed_at, %s) where delivery_id = %s",
            (status, error, now, now, delivery_id),
        )

    async def reopen(self, delivery_ids: list[str], now: datetime) -> int:
        """Dead letters being replayed get a fresh attempt budget; sent deliveries stay sent."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "update delivery_log set status = 'retrying', attempts = 0, claimed_until = null,"
                " updated_at = %s where delivery_id = any(%s) and status in ('failed', 'dead_lettered')",
                (now, delivery_ids),
            )
            return cur.rowcount

    async def status(self, delivery_id: str) -> tuple[str, int] | None:
        row = await self._one(
            "select status, attempts from delivery_log where delivery_id = %s", (delivery_id,)
        )
        return None if row is None else (row[0], row[1])

    async def _one(self, sql: str, params: Any) -> tuple[Any, ...] | None:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(sql.encode(), params)
                return await cur.fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(f"delivery log: {exc}") from exc

    async def _exec(self, sql: str, params: Any) -> None:
        try:
            async with self._pool.connection() as conn:
                await conn.execute(sql.encode(), params)
        except psycopg.Error as exc:
            raise DatabaseError(f"delivery log: {exc}") from exc

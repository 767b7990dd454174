"""The delivery log in PostgreSQL: claim a delivery before the provider call, mark it after.

A claim is a lease. It is refused when the delivery already ended (sent, failed, dead-lettered) and
deferred while another worker's lease runs (a second copy of a record in flight is not sent twice).
A worker restarted with the same owner id takes its own leases back at start-up (``release_own``),
so a crash does not stall its deliveries for a whole lease. A mark applies only while the marking
worker still holds the claim: a worker whose lease lapsed and was taken over learns so from the
mark's result (False), and never overwrites the new owner's row. A send whose outcome was never marked
(the worker died mid-call) is in doubt and is sent again: providers' idempotency handles
(``apns-id``, ``Message-ID``) cover that window, and nothing marked sent is ever sent twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from consumers.delivery.batcher import Batcher
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


@dataclass(frozen=True)
class _ClaimRequest:
    delivery_id: str
    notification_id: str
    channel: str
    now: datetime


@dataclass(frozen=True)
class _Mark:
    delivery_id: str
    status: str  # sent, retrying, failed, dead_lettered
    provider_message_id: str | None
    error: str | None
    at: datetime


class DeliveryLog:
    """Claims and marks from concurrent deliveries are grouped into one statement and one commit."""

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]], owner: str, lease: timedelta):
        self._pool, self._owner, self._lease = pool, owner, lease
        self._claims: Batcher[_ClaimRequest, Claim] = Batcher(self._claim_batch)
        self._marks: Batcher[_Mark, bool] = Batcher(self._mark_batch)

    async def claim(self, delivery_id: str, notification_id: str, channel: str, now: datetime) -> Claim:
        return await self._claims.submit(_ClaimRequest(delivery_id, notification_id, channel, now))

    async def mark_sent(self, delivery_id: str, provider_message_id: str | None, now: datetime) -> bool:
        """True when marked; False when this worker no longer held the claim (nothing written)."""
        return await self._marks.submit(_Mark(delivery_id, "sent", provider_message_id, None, now))

    async def mark_failed(self, delivery_id: str, status: str, error: str, now: datetime) -> bool:
        """``status``: 'retrying' (the lease is released for the retry copy), 'failed' or 'dead_lettered'.
        True when marked; False when this worker no longer held the claim (nothing written)."""
        if status not in ("retrying", "failed", "dead_lettered"):
            raise ValueError(f"not a failure status: {status!r}")
        return await self._marks.submit(_Mark(delivery_id, status, None, error, now))

    async def _claim_batch(self, requests: list[_ClaimRequest]) -> list[Claim]:
        # One row can be claimed once per statement: a second copy in the same batch is busy.
        first: dict[str, _ClaimRequest] = {}
        for request in requests:
            first.setdefault(request.delivery_id, request)
        rows = list(first.values())
        now = max(r.now for r in rows)
        params = {
            "ids": [r.delivery_id for r in rows],
            "nids": [r.notification_id for r in rows],
            "chs": [r.channel for r in rows],
            "owner": self._owner,
            "until": now + self._lease,
            "now": now,
        }
        # One transaction (the pool is in autocommit): a claim whose read-back fails is rolled back
        # and claimed again on the retry, instead of leaving this worker's own lease in its way.
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(
                "insert into delivery_log as d (delivery_id, notification_id, channel, status, attempts,"
                " claimed_by, claimed_until, updated_at)"
                " select id, nid, ch, 'sending', 1, %(owner)s, %(until)s, %(now)s"
                " from unnest(%(ids)s::text[], %(nids)s::text[], %(chs)s::text[]) as u(id, nid, ch)"
                " on conflict (delivery_id) do update set status = 'sending', attempts = d.attempts + 1,"
                " claimed_by = excluded.claimed_by, claimed_until = excluded.claimed_until,"
                " updated_at = %(now)s"
                " where d.status in ('sending', 'retrying')"
                " and (d.claimed_until is null or d.claimed_until < %(now)s)"
                " returning delivery_id, attempts, first_failed_at",
                params,
            )
            claimed = {
                r[0]: Claim(ClaimResult.CLAIMED, attempts=r[1], first_failed_at=r[2])
                for r in await cur.fetchall()
            }
            refused = [i for i in first if i not in claimed]
            others: dict[str, Claim] = {}
            if refused:
                cur = await conn.execute(
                    "select delivery_id, status, claimed_until from delivery_log where delivery_id = any(%s)",
                    (refused,),
                )
                for delivery_id, status, until in await cur.fetchall():
                    busy = status in ("sending", "retrying")
                    others[delivery_id] = (
                        Claim(ClaimResult.BUSY, busy_until=until) if busy else Claim(ClaimResult.DONE)
                    )
        results = []
        for request in requests:
            if first[request.delivery_id] is not request:
                results.append(Claim(ClaimResult.BUSY, busy_until=request.now + self._lease))
            else:
                results.append(
                    claimed.get(request.delivery_id)
                    or others.get(request.delivery_id, Claim(ClaimResult.DONE))
                )
        return results

    async def _mark_batch(self, marks: list[_Mark]) -> list[bool]:
        async with self._connection() as conn:
            cur = await conn.execute(
                "update delivery_log as d set status = u.status, updated_at = u.at, claimed_until = null,"
                " provider_message_id = coalesce(u.pmid, d.provider_message_id),"
                " sent_at = case when u.status = 'sent' then u.at else d.sent_at end,"
                " last_error = coalesce(u.err, d.last_error),"
                " first_failed_at = case when u.status = 'sent' then d.first_failed_at"
                " else coalesce(d.first_failed_at, u.at) end"
                " from unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])"
                " as u(id, status, pmid, err, at) where d.delivery_id = u.id"
                # Only while the claim is still ours: a lapsed lease may have a new owner by now.
                " and d.status = 'sending' and d.claimed_by = %s"
                " returning d.delivery_id",
                (
                    [m.delivery_id for m in marks],
                    [m.status for m in marks],
                    [m.provider_message_id for m in marks],
                    [m.error for m in marks],
                    [m.at for m in marks],
                    self._owner,
                ),
            )
            applied = {row[0] for row in await cur.fetchall()}
        return [m.delivery_id in applied for m in marks]

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise DatabaseError(f"delivery log: {exc}") from exc

    async def release_own(self) -> int:
        """At start-up: what a previous run of this owner left claimed is claimable again."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "update delivery_log set claimed_until = null where claimed_by = %s and status = 'sending'"
                " and claimed_until is not null",
                (self._owner,),
            )
            return cur.rowcount

    async def prune(self, channel: str, older_than: datetime, limit: int) -> int:
        """Delete at most ``limit`` finished rows of ``channel`` last touched before ``older_than``."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "delete from delivery_log where ctid = any(array(select ctid from delivery_log"
                " where status in ('sent', 'failed', 'dead_lettered') and channel = %s and updated_at < %s"
                " order by updated_at limit %s))",
                (channel, older_than, limit),
            )
            return cur.rowcount

    async def reopen(self, delivery_ids: list[str], now: datetime) -> int:
        """Dead letters being replayed get a fresh attempt budget; sent deliveries stay sent."""
        async with self._connection() as conn:
            cur = await conn.execute(
                "update delivery_log set status = 'retrying', attempts = 0, claimed_until = null,"
                " updated_at = %s where delivery_id = any(%s) and status in ('failed', 'dead_lettered')",
                (now, delivery_ids),
            )
            return cur.rowcount

"""Delivery-log marks are conditional on still holding the claim (real PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from consumers.delivery.delivery_log import ClaimResult, DeliveryLog
from notify_core.db.connect import make_async_pool
from notify_core.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def pool(
    db_schema: tuple[Settings, str],
) -> AsyncIterator[AsyncConnectionPool[psycopg.AsyncConnection[Any]]]:
    settings, schema = db_schema
    made = await make_async_pool(settings, schema=schema, max_size=2)
    yield made
    await made.close()


async def row(pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]], delivery_id: str) -> tuple[Any, ...]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select status, claimed_by from delivery_log where delivery_id = %s", (delivery_id,)
        )
        found = await cur.fetchone()
        assert found is not None
        return tuple(found)


async def test_a_worker_whose_lease_was_taken_over_cannot_overwrite_the_new_owners_row(
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
) -> None:
    """A's lease lapses, B claims: A's late mark is refused (False) and B's row is untouched; B marks."""
    slow = DeliveryLog(pool, owner="worker-a", lease=timedelta(seconds=1))
    fast = DeliveryLog(pool, owner="worker-b", lease=timedelta(seconds=60))
    delivery_id, nid = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = datetime.now(UTC)
    assert (await slow.claim(delivery_id, nid, "sms", t0)).result is ClaimResult.CLAIMED
    later = t0 + timedelta(seconds=5)  # A's lease has lapsed
    assert (await fast.claim(delivery_id, nid, "sms", later)).result is ClaimResult.CLAIMED

    assert await slow.mark_sent(delivery_id, "late", later) is False
    assert await slow.mark_failed(delivery_id, "dead_lettered", "late", later) is False
    assert await row(pool, delivery_id) == ("sending", "worker-b")

    assert await fast.mark_sent(delivery_id, "mine", later) is True
    assert await row(pool, delivery_id) == ("sent", "worker-b")

"""Router state and the delivery log stay bounded: pruned past retention, in bounded batches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.delivery.delivery_log import ClaimResult, DeliveryLog
from consumers.router.state import RouterState
from notify_core.db.connect import connect, make_async_pool
from notify_core.settings import Settings

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC)
WINDOW = timedelta(days=7)


def count(conn: Any, table: str) -> int:
    row = conn.execute(f"select count(*) from {table}").fetchone()  # noqa: S608 - test tables
    return int(row[0])


def test_router_state_past_its_windows_is_pruned_in_bounded_batches(db_schema: tuple[Settings, str]) -> None:
    """Old dedupe marks, cap rows and released deferred rows go, a batch at a time; recent ones stay."""
    settings, schema = db_schema
    with connect(settings, schema=schema) as conn:
        state = RouterState(conn, dedupe_window=WINDOW)
        old, recent = NOW - timedelta(days=8), NOW - timedelta(hours=1)
        state.record([(f"id:old-{i}", 0, i) for i in range(7)], [], [], old)
        state.record([("id:recent", 0, 99)], [], [], recent)
        state.record([], [(f"d-{i}", "u", "sms", "c") for i in range(3)], [], NOW - timedelta(days=2))
        state.record([], [], [("late", NOW, "t", None, b"v", None)], NOW)
        state.mark_released(["late"], NOW - timedelta(days=2))
        conn.commit()
        assert state.prune(NOW, released_retention=timedelta(days=1), limit=5) == 5 + 3 + 1
        assert state.prune(NOW, released_retention=timedelta(days=1), limit=5) == 2
        assert state.prune(NOW, released_retention=timedelta(days=1), limit=5) == 0
        conn.commit()
        assert [count(conn, t) for t in ("router_seen", "router_routed", "router_deferred")] == [1, 0, 0]


def test_an_idempotency_key_reused_after_its_window_is_new_and_then_deduplicated_again(
    db_schema: tuple[Settings, str],
) -> None:
    """The old sighting no longer counts, the new one takes its place, and a retry of the new
    request at another offset is caught as a duplicate."""
    settings, schema = db_schema
    key = f"idem:svc:{uuid.uuid4()}"
    with connect(settings, schema=schema) as conn:
        state = RouterState(conn, dedupe_window=WINDOW)
        state.record([(key, 0, 1)], [], [], NOW - timedelta(days=30))
        assert state.seen([key], NOW) == {}  # outside the window: new
        state.record([(key, 2, 500)], [], [], NOW)
        assert state.seen([key], NOW) == {key: (2, 500)}  # a retry at another offset is a duplicate


@pytest.mark.asyncio
async def test_finished_deliveries_past_retention_are_pruned_and_open_ones_kept(
    db_schema: tuple[Settings, str],
) -> None:
    """Sent rows older than the retention go; a delivery still being sent is never pruned."""
    settings, schema = db_schema
    pool = await make_async_pool(settings, schema=schema, max_size=2)
    try:
        log = DeliveryLog(pool, owner="w", lease=timedelta(seconds=60))
        then = NOW - timedelta(days=20)
        ids = [str(uuid.uuid4()) for _ in range(4)]
        for delivery_id in ids:
            claim = await log.claim(delivery_id, str(uuid.uuid4()), "email", then)
            assert claim.result is ClaimResult.CLAIMED
        for delivery_id in ids[:3]:
            assert await log.mark_sent(delivery_id, "m", then)
        assert await log.prune("email", NOW - timedelta(days=14), limit=2) == 2
        assert await log.prune("email", NOW - timedelta(days=14), limit=2) == 1
        assert await log.prune("email", NOW - timedelta(days=14), limit=2) == 0
        assert await log.prune("sms", NOW, limit=10) == 0
    finally:
        await pool.close()

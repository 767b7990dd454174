"""Shared by the delivery tests: channel messages on real topics, a worker run, what came out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from consumers.delivery.dead_letters import Selection, read_letters, replay
from consumers.delivery.delivery_log import DeliveryLog
from consumers.delivery.worker import Adapter, Deactivate, Worker, WorkerStats
from notify_core.codec import DEAD_LETTER, EVENT, default_codec
from notify_core.db.connect import make_async_pool
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from sandboxes.faults import FaultPlan
from sandboxes.messages import channel_message, publish

__all__ = ["DeliveryEnv", "channel_message", "delivery_env", "exhaust_then_replay"]


@dataclass
class DeliveryEnv:
    settings: Settings
    schema: str
    channel: Channel
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]

    def publish(self, messages: list[dict[str, Any]]) -> None:
        publish(self.settings, self.channel, messages)

    def worker(self, adapter: Adapter, deactivate: Deactivate | None = None, owner: str = "w-0") -> Worker:
        log = DeliveryLog(self.pool, owner=owner, lease=timedelta(seconds=30))
        return Worker(
            self.settings,
            self.channel,
            adapter,
            log,
            provider="sandbox",
            deactivate=deactivate,
        )

    async def run(self, adapter: Adapter, idle_s: float = 2.0, **kwargs: Any) -> WorkerStats:
        return await self.worker(adapter, **kwargs).run(stop_when_idle=True, idle_s=idle_s, max_runtime_s=120)

    def read(self, topic: str, schema: str) -> list[dict[str, Any]]:
        codec = default_codec()
        records = read_records(self.settings, topic, max_records=100_000, timeout_s=30, idle_s=1.0)
        return [codec.decode(r.value or b"", schema) for r in records]

    def events(self) -> list[dict[str, Any]]:
        return self.read(topic_names(self.settings).events, EVENT)

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.read(topic_names(self.settings).dlq(self.channel), DEAD_LETTER)

    async def log_rows(self) -> dict[str, tuple[str, int, str | None]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("select delivery_id, status, attempts, last_error from delivery_log")
            return {r[0]: (r[1], r[2], r[3]) for r in await cur.fetchall()}


@asynccontextmanager
async def delivery_env(settings: Settings, schema: str, channel: Channel) -> AsyncIterator[DeliveryEnv]:
    fast = settings.model_copy(
        update={
            "delivery_backoff_base_s": 0.2,
            "delivery_backoff_max_s": 1.0,
            "delivery_max_attempts": 3,
            # Groups of this test's own, derived the way every worker derives them.
            "worker_group_prefix": settings.topic_prefix,
        }
    )
    pool = await make_async_pool(fast, schema=schema, max_size=4)
    try:
        yield DeliveryEnv(fast, schema, channel, pool)
    finally:
        await pool.close()


async def exhaust_then_replay(
    env: DeliveryEnv, make_adapter: Callable[[], Adapter], faults: FaultPlan, targets: list[str], error: str
) -> None:
    """Every target fails with a retryable ``error`` until the budget is spent and it is dead-lettered;
    the provider heals; the dead letters are replayed and each is delivered exactly once more."""
    messages = [channel_message(env.channel, t) for t in targets]
    for target in targets:
        faults.add(error, target=target)
    env.publish(messages)
    first = await env.run(make_adapter())
    assert (first.sent, first.dead_lettered) == (0, len(messages))
    letters = read_letters(env.settings, env.channel.value, Selection(reason="attempts_exhausted"))
    assert sorted(item.letter["attempts"] for item in letters) == [env.settings.delivery_max_attempts] * len(
        messages
    )
    assert all(error in item.letter["error_message"] for item in letters)

    faults.clear()
    log = DeliveryLog(env.pool, owner="replay", lease=timedelta(seconds=30))
    assert await replay(env.settings, env.channel.value, letters, log) == len(messages)
    second = await env.run(make_adapter())
    assert second.sent == len(messages)
    rows = await env.log_rows()
    assert {rows[m["delivery_id"]][:2] for m in messages} == {("sent", 1)}

"""The demo's delivery step: the four channel workers against their sandboxes, with a few injected faults."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from consumers.delivery.delivery_log import DeliveryLog
from consumers.delivery.worker import Worker, WorkerStats
from notify_cli.worker_cmd import make_deactivate
from notify_core.db.connect import make_async_pool, make_pool
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.userdata.repository import UserDataRepository
from sandboxes.faults import Received
from sandboxes.local import LocalProvider, local_provider

# What the demo makes go wrong, by target: (error, how many times; None = every time).
FAULTS: dict[Channel, list[tuple[str, str, int | None]]] = {
    Channel.IOS: [("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0", "Unregistered", None)],
    Channel.SMS: [("+33612345678", "Throttling", 1)],
    Channel.EMAIL: [("ada@example.com", "451", 1)],
}


@dataclass(frozen=True)
class Delivered:
    stats: dict[Channel, WorkerStats]
    received: dict[Channel, list[Received]]
    log: dict[str, tuple[str, int, str | None]]  # delivery_id -> (status, attempts, last error)


def deliver(settings: Settings, workdir: Path, delivery_ids: list[str]) -> Delivered:
    return asyncio.run(_deliver(settings, workdir, delivery_ids))


async def _deliver(settings: Settings, workdir: Path, delivery_ids: list[str]) -> Delivered:
    quick = settings.model_copy(update={"delivery_backoff_base_s": 0.5, "delivery_backoff_max_s": 2.0})
    pool = await make_async_pool(quick, max_size=4)
    users = make_pool(quick, max_size=2)
    deactivate = make_deactivate(UserDataRepository(users))
    try:
        with ExitStack() as stack:
            providers: dict[Channel, LocalProvider] = {}
            for channel in Channel:
                folder = workdir / channel.value
                folder.mkdir(parents=True, exist_ok=True)
                providers[channel] = stack.enter_context(local_provider(channel, folder, quick))
                for target, error, times in FAULTS.get(channel, []):
                    providers[channel].faults.add(error, target=target, times=times)
            workers = {
                channel: Worker(
                    quick,
                    channel,
                    provider.make_adapter(),
                    DeliveryLog(pool, owner=f"notify-{channel.value}-demo", lease=timedelta(seconds=30)),
                    provider=provider.name,
                    deactivate=deactivate,
                )
                for channel, provider in providers.items()
            }
            runs = [w.run(stop_when_idle=True, idle_s=3.0, max_runtime_s=120) for w in workers.values()]
            stats = dict(zip(workers, await asyncio.gather(*runs), strict=True))
            received = {channel: p.recorder.all() for channel, p in providers.items()}
        async with pool.connection() as conn:
            cur = await conn.execute(
                "select delivery_id, status, attempts, last_error from delivery_log"
                " where delivery_id = any(%s)",
                (delivery_ids,),
            )
            log = {r[0]: (r[1], r[2], r[3]) for r in await cur.fetchall()}
    finally:
        await pool.close()
        users.close()
    return Delivered(stats, received, log)


def describe(received: list[Received]) -> str:
    answers = Counter(r.answered for r in received)
    return ", ".join(f"{n} {answer}" for answer, n in sorted(answers.items())) or "nothing"


def status_line(row: tuple[str, int, str | None] | None) -> str:
    if row is None:
        return "not delivered"
    status, attempts, error = row
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    return f"{status} after {tries}" + (f" (last error: {error})" if error else "")

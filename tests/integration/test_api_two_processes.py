"""Two `notify api run` processes on one database and broker: an Idempotency-Key raced across both
gives every caller the same id, and the router routes it once; the same key with two different
bodies at once is accepted for one and refused (422) for the other, never silently dropped."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.keys import KeyStore, Scope
from consumers.router.app import Router
from notify_core.db.connect import connect, make_pool
from notify_core.db.migrate import migrate
from notify_core.settings import Settings
from notify_core.userdata.repository import UserDataRepository
from tests.api_harness import schema_settings
from tests.pipeline import Process

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_healthy(http: aiohttp.ClientSession, url: str, process: Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.alive(), process.tail()
        try:
            async with http.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never became healthy:\n{process.tail()}")


async def test_an_idempotency_key_raced_across_two_api_processes(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path
) -> None:
    """Forty concurrent calls with one key and body, half to each process: one id for all, one
    routed request. Then one key with two bodies at once: one 202, one 422."""
    own = schema_settings(settings, db_schema[1], router_group=f"router-{uuid.uuid4().hex[:8]}")
    with connect(own) as conn:
        migrate(conn)
        conn.commit()
    pool = make_pool(own, max_size=1)
    key = KeyStore(pool).create("shop", [Scope.SEND])[1]
    for user_id in ("ann", "bob"):
        UserDataRepository(pool).upsert_user(user_id)
    env = {
        "NOTIFY_DATABASE_URL": own.database_url.get_secret_value(),
        "NOTIFY_TOPIC_PREFIX": own.topic_prefix,
    }
    ports = [free_port(), free_port()]
    apis = [Process(["api", "run", "--port", str(p)], env, tmp_path / f"api-{p}.log") for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    headers = {"Authorization": f"Bearer {key}"}
    body: dict[str, Any] = {"user_id": "ann", "template_id": "welcome", "category": "account"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            for url, process in zip(urls, apis, strict=True):
                await wait_healthy(http, url, process)

            async def post(url: str, data: dict[str, Any], idem: str) -> tuple[int, Any]:
                async with http.post(
                    f"{url}/v1/notifications", json=data, headers={"Idempotency-Key": idem}
                ) as response:
                    return response.status, await response.json()

            same = str(uuid.uuid4())
            answers = await asyncio.gather(*(post(urls[i % 2], body, same) for i in range(40)))
            assert {status for status, _ in answers} == {202}
            assert len({answer["notification_id"] for _, answer in answers}) == 1

            other = str(uuid.uuid4())
            raced = await asyncio.gather(
                post(urls[0], body, other), post(urls[1], {**body, "user_id": "bob"}, other)
            )
            assert sorted(status for status, _ in raced) == [202, 422]
    finally:
        for process in apis:
            assert process.stop() == 0, process.tail()
        pool.close()

    repo_pool = make_pool(own, max_size=2)
    try:
        router = Router(own, lambda: connect(own), UserDataRepository(repo_pool))
        stats = router.run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120)
    finally:
        repo_pool.close()
    # 40 copies of one request and the one accepted raced body: two distinct requests, 39 duplicates.
    assert stats.records == 41
    assert stats.decisions["suppressed:duplicate"] == 39

"""The HTTP API served for real on loopback, in the test's own event loop, on its own topics and
database schema; with helpers to mint keys and read what it produced."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import psycopg
import pytest_asyncio
from aiohttp import web
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from api.app import create_app
from api.keys import KeyStore, Scope
from notify_core.codec import EVENT, default_codec
from notify_core.db.connect import make_pool, schema_url
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import topic_names
from notify_core.userdata.repository import UserDataRepository

ALL_SCOPES = (Scope.SEND, Scope.CONTACTS, Scope.STATUS)


@dataclass
class ApiEnv:
    url: str
    settings: Settings  # its database_url carries the test's schema
    pool: ConnectionPool[psycopg.Connection[Any]]
    http: aiohttp.ClientSession

    def key(
        self,
        service: str = "billing",
        scopes: Sequence[Scope] = ALL_SCOPES,
        *,
        rate: float | None = None,
        burst: int | None = None,
    ) -> str:
        return KeyStore(self.pool).create(service, scopes, rate_per_s=rate, burst=burst)[1]

    def users(self, *user_ids: str) -> None:
        """Create these users (requests to unknown users are refused with 422)."""
        repo = UserDataRepository(self.pool, cache_size=0)
        for user_id in user_ids:
            repo.upsert_user(user_id)

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def events(self, timeout_s: float = 10, idle_s: float = 1.5) -> list[dict[str, Any]]:
        codec = default_codec()
        topic = topic_names(self.settings).events
        records = read_records(self.settings, topic, max_records=10_000, timeout_s=timeout_s, idle_s=idle_s)
        return [codec.decode(r.value or b"", EVENT) for r in records]


def schema_settings(settings: Settings, schema: str, **overrides: Any) -> Settings:
    """``settings`` whose every connection (child processes too) uses ``schema``."""
    return settings.model_copy(update={"database_url": SecretStr(schema_url(settings, schema)), **overrides})


@pytest_asyncio.fixture
async def api_env(settings: Settings, db_schema: tuple[Settings, str]) -> AsyncIterator[ApiEnv]:
    configured = schema_settings(settings, db_schema[1], api_port=0, api_key_cache_s=0.2)
    runner = web.AppRunner(create_app(configured))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    pool = make_pool(configured, max_size=2)
    async with aiohttp.ClientSession() as http:
        yield ApiEnv(f"http://{host}:{port}", configured, pool, http)
    pool.close()
    await runner.cleanup()

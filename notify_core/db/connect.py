"""The one place database connections are made.

``schema`` puts a connection's ``search_path`` on one schema, so tests (and benchmarks) can each use
their own. psycopg's connection errors are translated into ``DatabaseError`` here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from notify_core.exceptions import DatabaseError
from notify_core.settings import Settings

CONNECT_TIMEOUT_S = 10
# Pools: a caller waits at most this long for a connection, and a lost connection is re-tried for
# this long before the pool gives up on that attempt and starts a fresh one on the next request.
# psycopg_pool's defaults (30 s and 5 min, with the retry delay doubling) made a process resume
# up to half a minute after PostgreSQL was back; the processes' own backoff covers longer outages.
POOL_WAIT_S = 10.0
POOL_RECONNECT_S = 10.0


def _kwargs(settings: Settings, schema: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": settings.client_id}
    if schema is not None:
        kwargs["options"] = f"-c search_path={schema}"
    return kwargs


def schema_url(settings: Settings, schema: str) -> str:
    """The database URL with its ``search_path`` on ``schema``: for a child process (tests, benchmarks)."""
    url = settings.database_url.get_secret_value()
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-c search_path={schema}')}"


def connect(settings: Settings, *, schema: str | None = None) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(settings.database_url.get_secret_value(), **_kwargs(settings, schema))
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc


def make_pool(
    settings: Settings, *, schema: str | None = None, min_size: int = 1, max_size: int = 4
) -> ConnectionPool[psycopg.Connection[Any]]:
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        settings.database_url.get_secret_value(),
        min_size=min_size,
        max_size=max_size,
        kwargs=_kwargs(settings, schema),
        timeout=POOL_WAIT_S,
        reconnect_timeout=POOL_RECONNECT_S,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:  # psycopg_pool raises PoolTimeout for a database it cannot reach
        pool.close()
        raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc
    return pool


async def make_async_pool(
    settings: Settings, *, schema: str | None = None, min_size: int = 1, max_size: int = 8
) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    """The asyncio twin of ``make_pool``, for the channel workers' delivery log.

    Its connections are in autocommit: a delivery-log mark is one statement, and a COMMIT round
    trip on top of it cost 130 us of the worker's CPU per call (243 against 106 us, measured with
    psycopg 3 against the local PostgreSQL). Several statements that must commit together (the
    claim and its read-back) use ``conn.transaction()``."""
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
        settings.database_url.get_secret_value(),
        min_size=min_size,
        max_size=max_size,
        kwargs={**_kwargs(settings, schema), "autocommit": True},
        timeout=POOL_WAIT_S,
        reconnect_timeout=POOL_RECONNECT_S,
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:  # psycopg_pool raises PoolTimeout for a database it cannot reach
        await pool.close()
        raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc
    return pool


@contextmanager
def pooled(pool: ConnectionPool[psycopg.Connection[Any]], what: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection from ``pool`` whose psycopg errors (a lost server, a pool that waited in vain)
    come out as ``DatabaseError`` naming ``what`` was being done: the one translation for callers
    that have nothing more specific to say."""
    try:
        with pool.connection() as conn:
            yield conn
    except (psycopg.Error, PoolTimeout) as exc:
        raise DatabaseError(f"{what}: {exc}") from exc

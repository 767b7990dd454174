"""``create_app(settings)``: the aiohttp application, its lifecycles and its routes.

Built the way aiohttp's own examples build apps: typed state under ``web.AppKey`` (``state.py``),
each long-lived dependency opened and closed by one ``cleanup_ctx`` generator, handlers (one module
per resource) that only parse, call and map errors. Middlewares, outermost first: metrics (sees
every answer, problems included), rate-limit headers, problem documents; outside them all, a span
per request (``api.tracing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from api import notifications, ops, tracking_routes, users
from api.auth import rate_headers_middleware
from api.errors import problem_middleware
from api.idempotency import prune
from api.keys import KeyStore
from api.metrics import ApiMetrics
from api.notification_schemas import id_namespace
from api.ops import metrics_middleware
from api.rate_limit import RateLimiter
from api.state import (
    CHANGES,
    CLIENT,
    EVENTS,
    ID_NAMESPACE,
    KEYS,
    LIMITER,
    METRICS,
    POOL,
    SETTINGS,
    SIGNER,
    USERS,
)
from api.tracing import tracing_middleware
from notify_core.db.connect import make_pool
from notify_core.kafka_async import AsyncProducer
from notify_core.metrics import Metrics
from notify_core.settings import Settings
from notify_core.tracking import TrackingSigner
from notify_core.userdata.changes import ChangePublisher
from notify_core.userdata.repository import UserDataRepository
from producer.client import NotificationClient

_log = structlog.get_logger("notify.api")
POOL_SIZE = 8  # the default thread pool runs at most ~6 database calls at once on 2 cores


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[tracing_middleware, metrics_middleware, rate_headers_middleware, problem_middleware],
        client_max_size=settings.api_max_body_bytes,
    )
    app[SETTINGS] = settings
    app[LIMITER] = RateLimiter(settings.api_rate_per_s, settings.api_rate_burst)
    app[SIGNER] = TrackingSigner.from_settings(settings)
    app[METRICS] = ApiMetrics(Metrics("notify-api", enabled=settings.metrics_enabled))
    app[ID_NAMESPACE] = id_namespace(settings.tracking_secret.get_secret_value())
    app.cleanup_ctx.extend([_database, _kafka, _pruning])
    app.on_startup.append(_freeze_startup_objects)
    for module in (notifications, users, tracking_routes, ops):
        app.add_routes(module.routes)
    return app


async def _freeze_startup_objects(app: web.Application) -> None:
    """What start-up made lives as long as the process: keep it out of the garbage collector's
    passes (measured under batch load: the longest pause 57 ms before, 12 ms after)."""
    gc.freeze()


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await asyncio.to_thread(make_pool, settings, max_size=POOL_SIZE)
    app[POOL] = pool
    app[KEYS] = KeyStore(pool, cache_s=settings.api_key_cache_s)
    # No cache: another API process or a worker may have changed the row a moment ago.
    app[USERS] = UserDataRepository(pool, cache_size=0)
    yield
    await asyncio.to_thread(pool.close)


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[CLIENT] = client = await asyncio.to_thread(NotificationClient, settings)
    app[EVENTS] = events = await asyncio.to_thread(AsyncProducer, settings)
    app[CHANGES] = ChangePublisher(settings, producer=events)
    yield
    await asyncio.gather(asyncio.to_thread(client.close), asyncio.to_thread(events.close))


async def _pruning(app: web.Application) -> AsyncIterator[None]:
    """Forgets Idempotency-Keys older than the router's dedupe window, in bounded rounds."""
    settings = app[SETTINGS]

    async def loop() -> None:
        while True:
            await asyncio.sleep(settings.prune_every_s)
            try:
                await asyncio.to_thread(prune, app[POOL], settings.dedupe_window_s, settings.prune_batch)
            except Exception as exc:  # pruning is housekeeping: log, never stop serving
                _log.warning("api_prune_failed", error=str(exc))

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

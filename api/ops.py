"""Operations: ``/healthz`` (the process is up), ``/readyz`` (the broker and the database answer),
``/metrics`` (Prometheus text, through the OpenTelemetry SDK) and ``/openapi.json`` (the document
kept in the repo beside this module)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from aiohttp import web

from api.errors import Unavailable
from api.state import CLIENT, METRICS, POOL
from notify_core.metrics import CONTENT_TYPE
from notify_core.resources import package_dir

routes = web.RouteTableDef()
READY_TIMEOUT_S = 2.0


@cache
def openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((package_dir("api") / "openapi.json").read_text("utf-8"))
    return document


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    checks = {"database": _database(request), "kafka": _kafka(request)}
    results = await asyncio.gather(*checks.values())
    status = {name: ok for name, ok in zip(checks, results, strict=True)}
    if not all(results):
        failed = ", ".join(name for name, ok in status.items() if not ok)
        raise Unavailable(
            f"not ready: {failed} did not answer", headers={"Retry-After": "5"}, extra={"checks": status}
        )
    return web.json_response({"status": "ready", "checks": status})


async def _database(request: web.Request) -> bool:
    pool = request.app[POOL]

    def ping() -> None:
        with pool.connection(timeout=READY_TIMEOUT_S) as conn:
            conn.execute("select 1")

    return await _passes(lambda: asyncio.to_thread(ping))


async def _kafka(request: web.Request) -> bool:
    client = request.app[CLIENT]
    return await _passes(lambda: asyncio.to_thread(client.broker_metadata, READY_TIMEOUT_S))


async def _passes(check: Callable[[], Awaitable[object]]) -> bool:
    try:
        await asyncio.wait_for(check(), READY_TIMEOUT_S + 1)
    except Exception:  # any failure means not ready; the reason is not the prober's business
        return False
    return True


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect raised as an exception (the click endpoint)
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].observe(request.method, route, status, time.perf_counter() - started)

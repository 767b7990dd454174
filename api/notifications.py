"""``POST /v1/notifications``, ``POST /v1/notifications:batch``, ``GET /v1/notifications/{id}``.

Ingestion goes through the SDK's own client (``NotificationClient``): the same validation, the
same encoding, the same produce path. A 202 is given only once the broker acknowledged every
record; a broker that does not answer within ``produce_timeout_s`` is a 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from api.auth import authenticate, charge
from api.bodies import read_json
from api.errors import NotFound, Unavailable, Unprocessable, field_error, pointer
from api.idempotency import Seen, remember
from api.keys import ApiKey, Scope
from api.notification_schemas import fingerprint, idempotency_key, parse_batch, parse_one
from api.state import CLIENT, ID_NAMESPACE, METRICS, POOL, SETTINGS, USERS
from notify_core.exceptions import DatabaseError, DeliveryError
from notify_core.status import lookup_status
from producer.client import SendResult

routes = web.RouteTableDef()
RETRY_AFTER = {"Retry-After": "5"}


@routes.post("/v1/notifications")
async def post_notification(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.SEND)
    charge(request, key, 1)
    body = await read_json(request)
    idem = idempotency_key(request.headers.get("Idempotency-Key"))
    notification = parse_one(body, key.service, idem, request.app[ID_NAMESPACE])
    await _check_users(request, [notification.user_id], lambda _: pointer("user_id"))
    await _check_idempotency(request, key, idem, body)
    try:
        result = await request.app[CLIENT].send_async(notification)
    except DeliveryError as exc:
        raise Unavailable(f"not accepted: {exc}", headers=RETRY_AFTER) from None
    request.app[METRICS].notifications_accepted(1)
    return web.json_response(
        _accepted(result),
        status=202,
        headers={"Location": f"/v1/notifications/{result.notification_id}"},
    )


@routes.post("/v1/notifications:batch")
async def post_batch(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.SEND)
    charge(request, key, 1)  # before any parsing: a key over its rate costs no CPU
    body = await read_json(request)
    settings = request.app[SETTINGS]
    idem = idempotency_key(request.headers.get("Idempotency-Key"))
    # Off the event loop: 100 items take ~5 ms to validate, which single sends should not wait for.
    notifications = await asyncio.to_thread(
        parse_batch, body, key.service, idem, settings.api_max_batch, request.app[ID_NAMESPACE]
    )
    if len(notifications) > 1:
        charge(request, key, len(notifications) - 1)
    await _check_users(
        request, [n.user_id for n in notifications], lambda i: pointer("notifications", i, "user_id")
    )
    await _check_idempotency(request, key, idem, body)
    try:
        results = await request.app[CLIENT].send_batch_async(notifications)
    except DeliveryError as exc:
        accepted: list[SendResult] = getattr(exc, "results", [])
        failures: list[tuple[int, DeliveryError]] = getattr(exc, "failures", [])
        request.app[METRICS].notifications_accepted(len(accepted))
        raise Unavailable(
            f"{len(failures)} of {len(notifications)} notifications not accepted: retry them",
            headers=RETRY_AFTER,
            extra={
                "accepted": [_accepted(r) for r in accepted],
                "failed": [{"index": i, "detail": str(e)} for i, e in failures],
            },
        ) from None
    request.app[METRICS].notifications_accepted(len(results))
    return web.json_response(
        {"count": len(results), "notifications": [_accepted(r) for r in results]}, status=202
    )


@routes.get("/v1/notifications/{notification_id}")
async def get_notification(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.STATUS)
    charge(request, key, 1)
    notification_id = request.match_info["notification_id"]
    try:
        status = await asyncio.to_thread(lookup_status, request.app[POOL], notification_id, key.service)
    except DatabaseError:
        raise Unavailable("the status store did not answer", headers=RETRY_AFTER) from None
    if status is None:
        raise NotFound(
            "no notification with this id for this service (or not routed yet: the router records a"
            " request once it has decided on it)"
        )
    return web.json_response(status.to_json())


async def _check_users(request: web.Request, user_ids: list[str], where: Callable[[int], str]) -> None:
    """422 naming each request whose user is unknown: the router would only suppress it."""
    try:
        known = await asyncio.to_thread(request.app[USERS].known_users, user_ids)
    except DatabaseError:
        raise Unavailable("the user store did not answer", headers=RETRY_AFTER) from None
    unknown = [i for i, user_id in enumerate(user_ids) if user_id not in known]
    if unknown:
        errors = [
            field_error(where(i), "no such user: create it with PUT /v1/users/{user_id}") for i in unknown
        ]
        raise Unprocessable(errors=errors[:100], slug="unknown-user")


async def _check_idempotency(request: web.Request, key: ApiKey, idem: str | None, body: Any) -> None:
    if idem is None:
        return
    try:
        seen = await asyncio.to_thread(remember, request.app[POOL], key.service, idem, fingerprint(body))
    except DatabaseError:
        raise Unavailable("the idempotency store did not answer", headers=RETRY_AFTER) from None
    if seen is Seen.CONFLICT:
        raise Unprocessable(
            "this Idempotency-Key was first used with another body", slug="idempotency-key-reused"
        )


def _accepted(result: SendResult) -> dict[str, Any]:
    return {"notification_id": result.notification_id, "status": "accepted"}

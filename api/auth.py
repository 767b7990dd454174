"""Who is calling, what they may do, and how fast: the API key, its scope, its rate (per request).

``authenticate(request, scope)`` then ``charge(request, key, cost)`` are what a handler calls:
401 for a missing, malformed, unknown or revoked key (one message for all, so a caller learns
nothing about which), 403 for a key without the scope and 429 with ``Retry-After`` over the key's
rate. The rate-limit headers of the verdict are put on whatever response the handler then gives.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from api.errors import Forbidden, Handler, TooManyRequests, Unauthorized, Unavailable
from api.keys import ApiKey, InvalidKey, Scope
from api.state import KEYS, LIMITER
from notify_core.exceptions import DatabaseError

RATE_HEADERS = web.RequestKey("rate_headers", dict)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="notify"'}


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'", headers=_CHALLENGE)
    return token.strip()


async def authenticate(request: web.Request, scope: Scope) -> ApiKey:
    """The caller's live key, which must have ``scope``: 401 or 403 otherwise."""
    token = bearer_token(request)
    store = request.app[KEYS]
    try:
        key = store.cached(token)
        if key is None:
            key = await asyncio.to_thread(store.verify, token)
    except InvalidKey:
        raise Unauthorized("unknown or revoked API key", headers=_CHALLENGE) from None
    except DatabaseError:
        raise Unavailable("the key store did not answer", headers={"Retry-After": "5"}) from None
    if scope not in key.scopes:
        raise Forbidden(f"this key lacks the '{scope}' scope")
    return key


def charge(request: web.Request, key: ApiKey, cost: int) -> None:
    """Take ``cost`` units from the key's bucket: 429 with ``Retry-After`` when it has too few."""
    verdict = request.app[LIMITER].take(key.key_id, cost, time.monotonic(), key.rate_per_s, key.burst)
    headers = verdict.headers()
    if not verdict.allowed:
        raise TooManyRequests(
            f"over this key's rate of {verdict.quota} units per {verdict.window_s} s", headers=headers
        )
    request[RATE_HEADERS] = headers


@web.middleware
async def rate_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Puts the caller's rate-limit state on successful responses too."""
    response = await handler(request)
    headers = request.get(RATE_HEADERS)
    if headers:
        response.headers.update(headers)
    return response

"""Engagement tracking: click redirects, the open pixel, app-reported push opens and RFC 8058
one-click unsubscribe. No API key: the signed token in the link is the credential.

A token that is tampered with, expired, signed under a retired key or made for another purpose is
a 4xx problem and produces nothing. A good one produces its event (CLICKED, OPENED, UNSUBSCRIBED)
on the analytics topic; the click redirect goes only to the URL inside the signed token.
The unsubscribe ``GET`` changes nothing (mail scanners follow links): it shows a page whose button
sends the one-click ``POST``.
"""

from __future__ import annotations

import asyncio
import base64
import html
from datetime import UTC, datetime

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from api.bodies import read_json
from api.errors import BadRequest, Gone, NotFound, Unavailable, Unprocessable, field_error
from api.state import CHANGES, EVENTS, METRICS, SETTINGS, SIGNER, USERS
from notify_core.codec import CONTENT_TYPE_HEADERS, EVENT, default_codec
from notify_core.events import event
from notify_core.exceptions import DatabaseError, InvalidUserData, KafkaError
from notify_core.topics import topic_names
from notify_core.tracking import InvalidToken, Purpose, TrackedDelivery, is_redirectable

routes = web.RouteTableDef()
_log = structlog.get_logger("notify.api")
# The smallest transparent GIF (1x1, 43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
EVENT_TIMEOUT_S = 5.0


def _verified(request: web.Request, purpose: Purpose, token: str) -> TrackedDelivery:
    try:
        return request.app[SIGNER].verify(purpose, token)
    except InvalidToken as exc:
        if exc.reason == "expired":
            raise Gone("this link has expired", slug="token-expired") from None
        raise NotFound("this link is not valid", slug="bad-token") from None


async def _emit(request: web.Request, kind: str, delivery: TrackedDelivery, **attributes: str) -> bool:
    """Produce the event and wait for the broker's ack; ``False`` (logged) if it did not come."""
    record = event(
        kind,
        occurred_at=datetime.now(UTC),
        notification_id=delivery.notification_id,
        user_id=delivery.user_id,
        service=delivery.service,
        delivery_id=delivery.delivery_id,
        channel=delivery.channel,
        category=delivery.category,
        attributes=dict(attributes),
    )
    topic = topic_names(request.app[SETTINGS]).events
    value = default_codec().encode(EVENT, record)
    try:
        await asyncio.wait_for(
            request.app[EVENTS].produce(
                topic, value, delivery.notification_id.encode(), headers=list(CONTENT_TYPE_HEADERS)
            ),
            EVENT_TIMEOUT_S,
        )
    except (KafkaError, TimeoutError) as exc:
        _log.warning("tracking_event_not_recorded", event_type=kind, error=str(exc))
        return False
    request.app[METRICS].event_produced(kind)
    return True


@routes.get("/t/click/{token}")
async def click(request: web.Request) -> web.Response:
    delivery = _verified(request, Purpose.CLICK, request.match_info["token"])
    url = delivery.url or ""
    if not is_redirectable(url):
        raise NotFound("this link is not valid", slug="bad-token")
    # The person is waiting: a broker that does not answer costs the event, never the redirect.
    await _emit(request, "CLICKED", delivery, url=url[:1024])
    raise web.HTTPFound(url, headers=NO_STORE)


@routes.get("/t/open/{token}")
async def open_pixel(request: web.Request) -> web.Response:
    delivery = _verified(request, Purpose.OPEN, request.match_info["token"])
    await _emit(request, "OPENED", delivery, source="pixel")
    return web.Response(body=PIXEL, content_type="image/gif", headers=NO_STORE)


@routes.post("/v1/events/opened")
async def push_opened(request: web.Request) -> web.Response:
    body = await read_json(request)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or set(body) - {"token"}:
        raise Unprocessable(errors=[field_error("/token", 'send {"token": "<the push\'s notify_tracking>"}')])
    delivery = _verified(request, Purpose.PUSH_OPEN, token)
    if not await _emit(request, "OPENED", delivery, source="app"):
        raise Unavailable("the open was not recorded: retry", headers={"Retry-After": "5"})
    return web.json_response({"status": "recorded"}, status=202)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:3em auto">
<h1>{title}</h1><p>{text}</p>{form}
</body></html>
"""


def _page(title: str, text: str, form: str = "", status: int = 200) -> web.Response:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text), form=form)
    return web.Response(text=body, status=status, content_type="text/html", headers=NO_STORE)


@routes.get("/t/unsubscribe/{token}")
async def unsubscribe_page(request: web.Request) -> web.Response:
    delivery = _verified(request, Purpose.UNSUBSCRIBE, request.match_info["token"])
    form = (
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    what = f"{delivery.category} messages by {delivery.channel.value}"
    return _page("Unsubscribe", f"Stop receiving {what}?", form)


@routes.post("/t/unsubscribe/{token}")
async def unsubscribe(request: web.Request) -> web.Response:
    delivery = _verified(request, Purpose.UNSUBSCRIBE, request.match_info["token"])
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise BadRequest("send the form field List-Unsubscribe=One-Click (RFC 8058)")
    try:
        form = await request.post()
    except (ValueError, LookupError, HttpProcessingError, web.RequestPayloadError):  # no form, bad charset
        raise BadRequest("send the form field List-Unsubscribe=One-Click (RFC 8058)") from None
    if form.get("List-Unsubscribe") != "One-Click":
        raise BadRequest("send the form field List-Unsubscribe=One-Click (RFC 8058)")
    users = request.app[USERS]
    try:
        await asyncio.to_thread(
            lambda: users.set_preference(
                delivery.user_id, delivery.category, delivery.channel, opted_in=False
            )
        )
    except InvalidUserData:
        raise NotFound("this user no longer exists", slug="unknown-user") from None
    except DatabaseError:
        raise Unavailable("not unsubscribed yet: retry", headers={"Retry-After": "5"}) from None
    try:
        await request.app[CHANGES].publish(delivery.user_id, ["preferences"])
    except (KafkaError, TimeoutError):
        # Stored, but the routers would only see it after their cache time: the sender retries
        # (the POST is idempotent), so the next message is still stopped.
        raise Unavailable(
            "unsubscribed, but not yet in effect everywhere: retry", headers={"Retry-After": "5"}
        ) from None
    request.app[METRICS].change_published()
    await _emit(request, "UNSUBSCRIBED", delivery, source="one_click")
    return _page(
        "Unsubscribed",
        f"You will no longer receive {delivery.category} messages by {delivery.channel.value}.",
    )

"""The demo's HTTP API step: a user registered, a notification sent and engaged with, all through
the API, with the router and the workers behind it as in the steps before.

The API is served on a free loopback port in this process; the router and the workers are told
that port as ``public_base_url``, so the links they write lead back to it.
"""

from __future__ import annotations

import asyncio
import html
import re
import socket
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from api.app import create_app
from api.keys import KeyStore, Scope
from notify_cli.demo_delivery import deliver
from notify_cli.router_cmd import build_router
from notify_core.codec import EVENT, default_codec
from notify_core.db.connect import make_pool
from notify_core.records import end_offsets, read_records
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository

OFFER_URL = "https://shop.example.com/spring?utm=mail"
ENGAGEMENT = ("CLICKED", "OPENED", "UNSUBSCRIBED")


def tour(settings: Settings, workdir: Path) -> bool:
    """Print the API step; ``True`` when everything it shows happened as it should."""
    return asyncio.run(_tour(settings, workdir))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _tour(base: Settings, workdir: Path) -> bool:
    port = _free_port()
    settings = base.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    pool = make_pool(settings, max_size=1)
    repo = UserDataRepository(pool, cache_size=0)
    for channel in (Channel.ANDROID, Channel.EMAIL):
        repo.put_template(
            Template(
                "spring-offer",
                channel,
                "en",
                1,
                title="Spring offer",
                body="20% off for you, {{ name }}",
                email_subject="Spring offer for {{ name }}",
                email_html=f'<p>Hi {{{{ name }}}}, <a href="{OFFER_URL}">see the offer</a>.</p>',
            )
        )
    key = KeyStore(pool).create("demo-shop", [Scope.SEND, Scope.CONTACTS, Scope.STATUS])[1]
    pool.close()
    events_topic = topic_names(settings).events
    since = end_offsets(settings, events_topic)

    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url, auth = settings.public_base_url, {"Authorization": f"Bearer {key}"}
    user = f"demo-api-{uuid.uuid4().hex[:6]}"
    print(f"   serving on {url}; a key for service demo-shop: {key[:16]}...")
    try:
        async with aiohttp.ClientSession(headers=auth) as http:

            async def call(method: str, path: str, json: Any = None) -> tuple[int, Any]:
                async with http.request(method, f"{url}{path}", json=json) as response:
                    body = await response.json() if response.status != 204 else None
                    print(f"   {method} {path} -> {response.status}")
                    return response.status, body

            await call("PUT", f"/v1/users/{user}", {"locale": "en", "time_zone": "Europe/Berlin"})
            await call("PUT", f"/v1/users/{user}/email", {"address": f"{user}@example.com"})
            device = {"platform": "android", "token": f"fcm-{user}", "app": "notify-demo"}
            await call("POST", f"/v1/users/{user}/devices", device)
            request: dict[str, Any] = {
                "user_id": user,
                "template_id": "spring-offer",
                "category": "marketing",
            }
            request |= {"params": {"name": "Hedy"}, "channels": ["android", "email"]}
            _, accepted = await call("POST", "/v1/notifications", request)
            first = accepted["notification_id"]
            await asyncio.to_thread(_route, settings)
            _, status = await call("GET", f"/v1/notifications/{first}")
            delivery_ids = [c["delivery_id"] for c in status["channels"] if c.get("delivery_id")]
            delivered = await asyncio.to_thread(deliver, settings, workdir, delivery_ids)
            _, status = await call("GET", f"/v1/notifications/{first}")
            for row in status["deliveries"]:
                print(f"     {row['channel']:8} {row['status']} (provider id {row['provider_message_id']})")

            mail = next(r for r in delivered.received[Channel.EMAIL] if r.target == f"{user}@example.com")
            push = next(r for r in delivered.received[Channel.ANDROID] if r.target == f"fcm-{user}")
            page = mail.payload["html"] or ""
            click = html.unescape(re.findall(r'href="([^"]*/t/click/[^"]+)"', page)[0])
            pixel = html.unescape(re.findall(r'src="([^"]*/t/open/[^"]+)"', page)[0])
            async with http.get(click, allow_redirects=False) as response:
                where = response.headers.get("Location")
                print(f"   a click on the mail's link -> {response.status} to {where}")
            async with http.get(pixel) as response:
                print(f"   the mail's open pixel -> {response.status} {response.content_type}")
            token = push.payload["data"]["notify_tracking"]
            async with http.post(f"{url}/v1/events/opened", json={"token": token}) as response:
                print(f"   the app reports the push opened -> {response.status}")
            unsubscribe = (mail.payload["list_unsubscribe"] or "").strip("<>")
            async with http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}) as response:
                print(f"   one-click unsubscribe (RFC 8058) -> {response.status}")

            _, accepted = await call("POST", "/v1/notifications", request)
            await asyncio.to_thread(_route, settings)
            _, second = await call("GET", f"/v1/notifications/{accepted['notification_id']}")
            states = {c["channel"]: c["reason"] or c["state"] for c in second["channels"]}
            print(f"   the same offer again: {states}")
    finally:
        await runner.cleanup()

    codec = default_codec()
    seen = []
    for record in read_records(settings, events_topic, max_records=10_000, timeout_s=30, since=since):
        event = codec.decode(record.value or b"", EVENT)
        if event["notification_id"] == first and event["event_type"] in ENGAGEMENT:
            seen.append(event)
            where = event["attributes"].get("source") or event["attributes"].get("url", "")
            print(f"   event {event['event_type']:12} {(event['channel'] or '').lower():8} {where}")
    kinds = sorted(e["event_type"] for e in seen)
    return kinds == ["CLICKED", "OPENED", "OPENED", "UNSUBSCRIBED"] and states.get("email") == "opted_out"


def _route(settings: Settings) -> None:
    build_router(settings).run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120)

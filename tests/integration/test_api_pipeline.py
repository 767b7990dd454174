"""The HTTP API with the real pipeline behind it: two routers and the e-mail and SMS workers run as
their own processes. A user registered through the API gets a notification sent through the API;
its status shows the deliveries the workers made; the link in the mail redirects to the signed URL;
the one-click unsubscribe and an opt-out through the API each stop the next request, sent 1 s later.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from notify_core.topics import Channel
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository
from tests.api_harness import ApiEnv, api_env
from tests.pipeline import Process, Sandboxes, router, sandboxes, wait_for_members, worker

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
__all__ = ["api_env"]
T = TypeVar("T")
OFFER = "https://shop.example.com/offer?id=7&amp;utm=mail"  # as written in the template's HTML
CHANNELS = (Channel.EMAIL, Channel.SMS)


@contextmanager
def pipeline(env: ApiEnv, workdir: Path) -> Iterator[Sandboxes]:
    settings = env.settings
    with sandboxes(workdir / "sandboxes") as boxes, ExitStack() as stack:
        child_env = {
            **boxes.env,
            "NOTIFY_DATABASE_URL": settings.database_url.get_secret_value(),
            "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
            "NOTIFY_ROUTER_GROUP": f"{settings.topic_prefix}-router",
            "NOTIFY_WORKER_GROUP_PREFIX": settings.topic_prefix,
            "NOTIFY_PUBLIC_BASE_URL": env.url,
        }
        processes: list[Process] = [router(child_env, workdir / f"router-{n}.log") for n in (1, 2)]
        processes += [worker(c, child_env, workdir / f"{c.value}.log") for c in CHANNELS]
        for process in processes:
            stack.callback(process.stop)
        wait_for_members(settings, f"{settings.topic_prefix}-router", 2)
        yield boxes
        for process in processes:
            assert process.alive(), process.tail()


async def until(check: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 60) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await check()
        if found is not None:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_register_send_status_click_unsubscribe_and_opt_out(api_env: ApiEnv, tmp_path: Path) -> None:
    """The whole front door against the real pipeline, with two routers in their own processes."""
    env, key = api_env, api_env.key("shop")
    repo = UserDataRepository(env.pool, cache_size=0)
    for channel in CHANNELS:
        repo.put_template(
            Template(
                "offer",
                channel,
                "en",
                1,
                sms_text="Offer for {{ name }}",
                email_subject="An offer, {{ name }}",
                email_html=f'<html><body><p>Hi {{{{ name }}}}, <a href="{OFFER}">see</a></p></body></html>',
            )
        )

    async def call(method: str, path: str, json: Any = None) -> tuple[int, Any]:
        async with env.http.request(method, f"{env.url}{path}", json=json, headers=env.auth(key)) as r:
            return r.status, (await r.json() if r.status != 204 else None)

    assert (await call("PUT", "/v1/users/ann", {"time_zone": "Europe/Paris"}))[0] == 200
    assert (await call("PUT", "/v1/users/ann/email", {"address": "ann@example.com"}))[0] == 200
    assert (await call("PUT", "/v1/users/ann/phone", {"number": "+12025550123"}))[0] == 200

    async def send() -> str:
        body = {"user_id": "ann", "template_id": "offer", "category": "promo", "params": {"name": "Ann"}}
        status, answer = await call("POST", "/v1/notifications", body)
        assert status == 202, answer
        return str(answer["notification_id"])

    async def decided(notification_id: str) -> dict[str, Any] | None:
        status, answer = await call("GET", f"/v1/notifications/{notification_id}")
        return answer if status == 200 and answer["outcome"] is not None else None

    with pipeline(env, tmp_path) as boxes:
        first = await send()

        async def both_sent() -> dict[str, Any] | None:
            answer = await decided(first)
            deliveries = (answer or {}).get("deliveries", [])
            done = len(deliveries) == 2 and all(d["status"] == "sent" for d in deliveries)
            return answer if done else None

        status = await until(both_sent, "both deliveries sent")
        assert status["outcome"] == "routed"
        elsewhere = env.auth(env.key("another-service"))
        async with env.http.get(f"{env.url}/v1/notifications/{first}", headers=elsewhere) as response:
            assert response.status == 404  # another service cannot see it, nor learn that it exists
        assert all(d["provider_message_id"] and d["attempts"] == 1 for d in status["deliveries"])

        mail = boxes.recorders[Channel.EMAIL].delivered()[0]
        links = re.findall(r'href="([^"]+)"', mail.payload["html"])
        click = next(html.unescape(link) for link in links if "/t/click/" in link)
        async with env.http.get(click, allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == html.unescape(OFFER)
        pixel = re.search(r'<img src="([^"]+/t/open/[^"]+)"', mail.payload["html"])
        assert pixel is not None
        async with env.http.get(html.unescape(pixel.group(1))) as response:
            assert response.status == 200
        unsubscribe = mail.payload["list_unsubscribe"].strip("<>")
        async with env.http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}) as response:
            assert response.status == 200

        await asyncio.sleep(1.0)
        second_id = await send()
        second = await until(lambda: decided(second_id), "the second request decided")
        channels = {c["channel"]: c for c in second["channels"]}
        assert channels["email"]["state"] == "suppressed"
        assert channels["email"]["reason"] == "opted_out"
        assert channels["sms"]["state"] == "routed"

        patch = {"choices": [{"category": "promo", "channel": "sms", "opted_in": False}]}
        assert (await call("PATCH", "/v1/users/ann/preferences", patch))[0] == 200
        await asyncio.sleep(1.0)
        third_id = await send()
        third = await until(lambda: decided(third_id), "the third request decided")
        assert third["outcome"] == "suppressed"
        reasons = {c["channel"]: c["reason"] for c in third["channels"]}
        assert (reasons["email"], reasons["sms"]) == ("opted_out", "opted_out")

    kinds = {e["event_type"] for e in env.events() if e["notification_id"] == first}
    assert {"ROUTED", "SENT", "CLICKED", "OPENED", "UNSUBSCRIBED"} <= kinds
    assert len(boxes.recorders[Channel.EMAIL].delivered()) == 1  # only the first mail went out

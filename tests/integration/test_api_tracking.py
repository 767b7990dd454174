"""The tracking endpoints on the real stack: a click redirects only to the signed URL, the open
pixel, an app-reported push open and the RFC 8058 one-click unsubscribe each produce their event;
a forged, expired or wrong-purpose token is a 4xx and produces nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from notify_core.topics import Channel
from notify_core.tracking import Purpose, TrackedDelivery, TrackingSigner
from notify_core.userdata.repository import UserDataRepository
from tests.api_harness import ApiEnv, api_env

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
__all__ = ["api_env"]
SIGNED_URL = "https://shop.example.com/offer?id=7&utm=mail"


def delivery(channel: Channel = Channel.EMAIL, url: str | None = None) -> TrackedDelivery:
    return TrackedDelivery("d-1", "n-1", "ann", "billing", channel, "marketing", url)


def kinds(env: ApiEnv) -> list[tuple[str, Any, Any]]:
    return [(e["event_type"], e["delivery_id"], e["channel"]) for e in env.events()]


async def test_click_open_push_open_and_unsubscribe_produce_their_events(api_env: ApiEnv) -> None:
    """Each good token gives its answer (302 to the signed URL, a GIF, 202, the unsubscribe page
    and 200) and exactly one event each; the unsubscribe opts the user out."""
    signer = TrackingSigner.from_settings(api_env.settings)
    repo = UserDataRepository(api_env.pool, cache_size=0)
    repo.upsert_user("ann")
    http, url = api_env.http, api_env.url
    click = signer.sign(Purpose.CLICK, delivery(url=SIGNED_URL))
    async with http.get(f"{url}/t/click/{click}", allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"] == SIGNED_URL
    opened = signer.sign(Purpose.OPEN, delivery())
    async with http.get(f"{url}/t/open/{opened}") as response:
        assert response.status == 200
        assert response.content_type == "image/gif"
    push = signer.sign(Purpose.PUSH_OPEN, delivery(Channel.IOS))
    async with http.post(f"{url}/v1/events/opened", json={"token": push}) as response:
        assert response.status == 202
    unsubscribe = signer.sign(Purpose.UNSUBSCRIBE, delivery())
    async with http.get(f"{url}/t/unsubscribe/{unsubscribe}") as response:
        assert response.status == 200
        assert "List-Unsubscribe" in await response.text()
    context = repo.get_context("ann")
    assert context is not None
    assert context.preferences.choices == {}
    async with http.post(
        f"{url}/t/unsubscribe/{unsubscribe}", data={"List-Unsubscribe": "One-Click"}
    ) as response:
        assert response.status == 200
    context = repo.get_context("ann")
    assert context is not None
    assert context.preferences.choices == {("marketing", Channel.EMAIL): False}
    assert sorted(kinds(api_env)) == sorted(
        [
            ("CLICKED", "d-1", "EMAIL"),
            ("OPENED", "d-1", "EMAIL"),
            ("OPENED", "d-1", "IOS"),
            ("UNSUBSCRIBED", "d-1", "EMAIL"),
        ]
    )


async def test_bad_tokens_are_4xx_and_produce_nothing(api_env: ApiEnv) -> None:
    """Tampered, expired, wrong-purpose and garbage tokens: 404 or 410 problems, never a redirect,
    never an event; an unsubscribe POST without the RFC 8058 field is 400."""
    signer = TrackingSigner.from_settings(api_env.settings)
    old = TrackingSigner.from_settings(api_env.settings, clock=lambda: time.time() - 400 * 86400)
    click = signer.sign(Purpose.CLICK, delivery(url=SIGNED_URL))
    tampered = click[:-3] + ("AAA" if not click.endswith("AAA") else "BBB")
    expired = old.sign(Purpose.CLICK, delivery(url=SIGNED_URL))
    wrong_purpose = signer.sign(Purpose.OPEN, delivery())
    bad_port = signer.sign(Purpose.CLICK, delivery(url="https://shop.example.com:99999/x"))
    http, url = api_env.http, api_env.url
    for token, status in (
        (tampered, 404),
        (expired, 410),
        (wrong_purpose, 404),
        (bad_port, 404),
        ("x" * 5000, 404),
        ("..", 404),
    ):
        async with http.get(f"{url}/t/click/{token}", allow_redirects=False) as response:
            assert response.status == status, token[:40]
            assert response.content_type == "application/problem+json"
            assert "Location" not in response.headers
    async with http.post(f"{url}/v1/events/opened", json={"token": wrong_purpose}) as response:
        assert response.status == 404
    async with http.post(f"{url}/v1/events/opened", json={"tok": 1}) as response:
        assert response.status == 422
    unsubscribe = signer.sign(Purpose.UNSUBSCRIBE, delivery())
    async with http.post(f"{url}/t/unsubscribe/{unsubscribe}", data={"List-Unsubscribe": "yes"}) as response:
        assert response.status == 400
    for data, content_type in (
        (
            b"--x\r\nContent-Disposition: form-data\r\n\r\nOne-Click\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
        ),
        (b"List-Unsubscribe=\xff\xfe", "application/x-www-form-urlencoded; charset=nope"),
        (b"no boundary", "multipart/form-data"),
    ):
        async with http.post(
            f"{url}/t/unsubscribe/{unsubscribe}", data=data, headers={"Content-Type": content_type}
        ) as response:
            assert response.status == 400, content_type
            assert response.content_type == "application/problem+json"
    assert api_env.events(timeout_s=5, idle_s=1.0) == []

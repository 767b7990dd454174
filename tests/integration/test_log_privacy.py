"""The logs of a full run hold no personal data and no API key in clear.

The HTTP API, the router and all four channel workers run as their own processes at DEBUG (so the
libraries log too: botocore prints an SMS's parameters, aiohttp the raw line of a request it cannot
parse), against the real broker, database and the providers' sandboxes. One user, whose user id is
her e-mail address, registers her number and devices and is sent a notification through the API
with a real key; another is sent one with the SDK. On the way, what really puts personal data into
logs happens: SNS refuses a number quoting it (botocore logs the answer), the router logs each user
change by user id, a client's malformed requests make aiohttp log their raw header and request
lines (an API key, a device token in a query string), and APNs and FCM ask for a retry. No line of
any process may hold a number, an address, a token or a key used in clear; their masks must be
there instead, proof that the data did pass through the logs.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from api.keys import KeyStore, Scope
from notify_core.db.connect import make_pool
from notify_core.logs import mask
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient
from tests.api_harness import schema_settings
from tests.pipeline import Process, Sandboxes, sandboxes, seed, targets, wait_for_members

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
DEBUG = ["--log-level", "DEBUG"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def until(
    check: Callable[[], bool], what: str, processes: list[Process], timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            assert process.alive(), process.tail()
        if check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def variants(value: str) -> list[str]:
    """A value as logs could show it: as is, percent-encoded (a form body), a number without its +."""
    found = {value, quote(value, safe="")}
    if value.startswith("+"):
        found.add(value[1:])
    return sorted(found)


async def raw_request(port: int, data: bytes) -> None:
    """Bytes a broken client sends; aiohttp answers 400 and logs what it could not parse."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    assert (await reader.read(100)).startswith(b"HTTP/1.0 400")
    writer.close()
    await writer.wait_closed()


async def test_a_full_run_logs_no_phone_number_address_device_token_or_api_key(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path
) -> None:
    """Every line of every process's log (API, router, four workers, all at DEBUG) is checked for each
    number, address, device token and API key of the run: none is there in clear, each kind's mask is
    there, every line is JSON, and the lines about a delivery name it and its trace."""
    prefix = settings.topic_prefix
    own = schema_settings(settings, db_schema[1], router_group=f"{prefix}-router")
    pool = make_pool(own, max_size=2)
    key = KeyStore(pool).create("shop", [Scope.SEND, Scope.CONTACTS, Scope.STATUS])[1]
    secret = key.removeprefix("nfy_")[13:]  # after nfy_<12 hex key id>_
    bob = f"bob-{uuid.uuid4().hex[:8]}"
    seed(UserDataRepository(pool), [bob])  # the "hello" templates, and bob's four targets
    email = f"ann.{uuid.uuid4().hex[:6]}@example.org"  # also her user id, as some services have it
    ann = {
        Channel.IOS: secrets.token_hex(32),
        Channel.ANDROID: f"fcm-{secrets.token_urlsafe(24)}:APA91b{secrets.token_urlsafe(40)}",
        Channel.SMS: "+12025550187",
        Channel.EMAIL: email,
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    with sandboxes(tmp_path / "sandboxes") as boxes, ExitStack() as stack:
        boxes.faults[Channel.IOS].add("TooManyRequests", target=ann[Channel.IOS], times=1)
        boxes.faults[Channel.ANDROID].add("INTERNAL", target=ann[Channel.ANDROID], times=1)
        boxes.faults[Channel.SMS].add(
            f"InvalidParameter: Invalid parameter: PhoneNumber Reason: {ann[Channel.SMS]} is not valid",
            target=ann[Channel.SMS],
        )
        env = {
            **boxes.env,
            "NOTIFY_KAFKA_BOOTSTRAP": own.kafka_bootstrap,
            "NOTIFY_DATABASE_URL": own.database_url.get_secret_value(),
            "NOTIFY_TOPIC_PREFIX": prefix,
            "NOTIFY_ROUTER_GROUP": own.router_group,
            "NOTIFY_WORKER_GROUP_PREFIX": prefix,
            "NOTIFY_DELIVERY_BACKOFF_BASE_S": "0.2",
            "NOTIFY_DELIVERY_BACKOFF_MAX_S": "1",
        }
        port = free_port()
        processes = [
            Process([*DEBUG, "router", "run"], env, logs / "router.log"),
            *(
                Process([*DEBUG, "worker", "run", "--channel", c.value], env, logs / f"{c.value}.log")
                for c in Channel
            ),
            Process([*DEBUG, "api", "run", "--port", str(port)], env, logs / "api.log"),
        ]
        for process in processes:
            stack.callback(process.stop)
        wait_for_members(own, own.router_group, 1)  # listening to user changes from here on
        await until(lambda: healthy(port), "the API", processes)

        await register_and_send(f"http://127.0.0.1:{port}", key, ann)
        # A client with a stray control character in its Authorization header, and one that put a
        # device token in the query string of a request line with a space too many.
        await raw_request(
            port, f"GET /v1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\x01\r\n\r\n".encode()
        )
        await raw_request(
            port, f"POST /v1/users/{bob} /devices?token={ann[Channel.IOS]} HTTP/1.1\r\n\r\n".encode()
        )
        with NotificationClient(own) as client:
            client.send(
                {
                    "user_id": bob,
                    "template_id": "hello",
                    "service": "shop",
                    "category": "c",
                    "params": {"name": "Bob"},
                }
            )

        expected = {*targets(bob).values(), ann[Channel.IOS], ann[Channel.ANDROID], ann[Channel.EMAIL]}
        await until(lambda: done(boxes, expected, ann[Channel.SMS]), "every send", processes)
        for process in processes:
            assert process.stop() == 0, process.tail()
    pool.close()

    text = {path.name: path.read_text(errors="replace") for path in sorted(logs.iterdir())}
    lines = [line for body in text.values() for line in body.splitlines() if line.strip()]
    secrets_used = {
        "the API key": [key, secret],
        **{f"ann's {c.value}": variants(v) for c, v in ann.items()},
        **{f"bob's {c.value}": variants(v) for c, v in targets(bob).items()},
    }
    leaks = [
        f"{what} in {name}: {line[:300]}"
        for name, body in text.items()
        for line in body.splitlines()
        for what, values in secrets_used.items()
        if any(value in line for value in values)
    ]
    assert leaks == [], "\n".join(leaks[:20])
    # Each kind did reach the logs, masked: the number in botocore's Publish parameters and SNS's
    # refusal, the address as the user id of the router's change lines, the key's secret and the
    # token in aiohttp's errors.
    masks = {
        "phone number": mask(ann[Channel.SMS]),
        "e-mail address": mask(email),
        "device token": mask(ann[Channel.IOS]),
        "API key": mask(secret),
    }
    everything = "\n".join(text.values())
    assert [kind for kind, masked in masks.items() if masked not in everything] == []
    # Every line is JSON, and those about a delivery name it, its notification and its trace.
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(parsed) == len(lines), [line for line in lines if not line.startswith("{")][:5]
    about_deliveries = [p for p in parsed if "delivery_id" in p]
    assert any(p.get("logger", "").startswith("botocore") for p in about_deliveries)
    assert all(len(p.get("trace_id", "")) == 32 and "notification_id" in p for p in about_deliveries)


def healthy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def done(boxes: Sandboxes, expected: set[str], refused: str) -> bool:
    """Every expected target delivered, and the refused number tried."""
    tried = {r.target for recorder in boxes.recorders.values() for r in recorder.all()}
    return expected <= set(boxes.delivered()) and refused in tried


async def register_and_send(url: str, key: str, ann: dict[Channel, str]) -> None:
    """Ann's profile, contacts and devices through the API, then a notification to her."""
    user = quote(ann[Channel.EMAIL], safe="@")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:

        async def call(method: str, path: str, body: Any) -> None:
            async with http.request(method, f"{url}{path}", json=body) as response:
                assert response.status in (200, 201, 202), await response.text()

        await call("PUT", f"/v1/users/{user}", {"time_zone": "UTC"})
        await call("PUT", f"/v1/users/{user}/email", {"address": ann[Channel.EMAIL]})
        await call("PUT", f"/v1/users/{user}/phone", {"number": ann[Channel.SMS]})
        for platform in (Channel.IOS, Channel.ANDROID):
            device = {"platform": platform.value, "token": ann[platform], "app": "shop"}
            await call("POST", f"/v1/users/{user}/devices", device)
        body = {
            "user_id": ann[Channel.EMAIL],
            "template_id": "hello",
            "category": "c",
            "params": {"name": "Ann"},
        }
        await call("POST", "/v1/notifications", body)

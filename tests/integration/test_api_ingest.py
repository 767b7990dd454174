"""The HTTP API's ingestion on the real stack: keys, scopes, rates, problems, and the records it
produced on the requests topic."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from api.app import create_app
from api.keys import KeyStore, Scope
from notify_core.codec import REQUEST, default_codec
from notify_core.db.connect import make_pool
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import topic_names
from notify_core.userdata.repository import UserDataRepository
from tests.api_harness import ApiEnv, api_env, schema_settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
__all__ = ["api_env"]
PROBLEM = "application/problem+json"


def body(user_id: str = "u-1", **overrides: Any) -> dict[str, Any]:
    return {"user_id": user_id, "template_id": "welcome", "category": "account", **overrides}


@pytest.fixture(autouse=True)
def known_users(request: pytest.FixtureRequest) -> None:
    """The users these tests send to exist (an unknown user is a 422 of its own, tested below)."""
    if "api_env" in request.fixturenames:
        env: ApiEnv = request.getfixturevalue("api_env")
        env.users("u-1", "someone-else", *(f"u-{i}" for i in range(50)))


def produced(env: ApiEnv) -> list[dict[str, Any]]:
    codec = default_codec()
    records = read_records(
        env.settings, topic_names(env.settings).requests, max_records=10_000, timeout_s=10, idle_s=1.5
    )
    return [codec.decode(r.value or b"", REQUEST) for r in records]


async def test_single_post_is_acknowledged_and_carries_the_keys_service(api_env: ApiEnv) -> None:
    """202 with the id once the broker acked; the record's service is the key's, never the body's."""
    key = api_env.key("billing")
    async with api_env.http.post(
        f"{api_env.url}/v1/notifications", json=body(), headers=api_env.auth(key)
    ) as response:
        assert response.status == 202
        answer = await response.json()
        assert response.headers["Location"] == f"/v1/notifications/{answer['notification_id']}"
        assert "RateLimit" in response.headers
        assert "RateLimit-Policy" in response.headers
    records = produced(api_env)
    assert [(r["notification_id"], r["service"]) for r in records] == [(answer["notification_id"], "billing")]


async def test_a_body_that_names_a_service_is_refused(api_env: ApiEnv) -> None:
    """The service comes from the key: a body that sets one gets 422 naming /service, nothing sent."""
    key = api_env.key("billing")
    async with api_env.http.post(
        f"{api_env.url}/v1/notifications", json=body(service="other"), headers=api_env.auth(key)
    ) as response:
        assert response.status == 422
        assert response.content_type == PROBLEM
        problem = await response.json()
    assert [e["pointer"] for e in problem["errors"]] == ["/service"]
    assert produced(api_env) == []


async def test_batch_names_every_bad_item_by_index_and_sends_none(api_env: ApiEnv) -> None:
    """One bad field in item 1 and one in item 3: 422 with both pointers; no record is produced."""
    key = api_env.key()
    items = [body(), body(user_id=""), body(), body(priority="urgent")]
    async with api_env.http.post(
        f"{api_env.url}/v1/notifications:batch", json={"notifications": items}, headers=api_env.auth(key)
    ) as response:
        assert response.status == 422
        problem = await response.json()
    assert [e["pointer"] for e in problem["errors"]] == [
        "/notifications/1/user_id",
        "/notifications/3/priority",
    ]
    assert produced(api_env) == []


async def test_batch_is_acknowledged_in_order(api_env: ApiEnv) -> None:
    """A batch of 50 answers 202 with 50 ids in input order, all on the topic."""
    key = api_env.key()
    items = [body(user_id=f"u-{i}") for i in range(50)]
    async with api_env.http.post(
        f"{api_env.url}/v1/notifications:batch", json={"notifications": items}, headers=api_env.auth(key)
    ) as response:
        assert response.status == 202
        answer = await response.json()
    ids = [n["notification_id"] for n in answer["notifications"]]
    assert answer["count"] == 50
    assert len(set(ids)) == 50
    assert sorted(r["notification_id"] for r in produced(api_env)) == sorted(ids)


async def test_a_batch_over_the_count_is_422(api_env: ApiEnv) -> None:
    """More items than NOTIFY_API_MAX_BATCH: 422 naming /notifications."""
    key = api_env.key()
    items = [body() for _ in range(api_env.settings.api_max_batch + 1)]
    async with api_env.http.post(
        f"{api_env.url}/v1/notifications:batch", json={"notifications": items}, headers=api_env.auth(key)
    ) as response:
        assert response.status == 422
        assert (await response.json())["errors"][0]["pointer"] == "/notifications"


async def test_wrong_key_is_401_and_missing_scope_is_403(api_env: ApiEnv) -> None:
    """No key, a malformed key and a well-formed unknown key are 401; a key without send is 403."""
    url = f"{api_env.url}/v1/notifications"
    unknown = "nfy_0123456789ab_" + "A" * 43
    for headers in ({}, api_env.auth("nope"), api_env.auth(unknown)):
        async with api_env.http.post(url, json=body(), headers=headers) as response:
            assert response.status == 401
            assert response.content_type == PROBLEM
            assert "WWW-Authenticate" in response.headers
    status_only = api_env.key(scopes=[Scope.STATUS])
    async with api_env.http.post(url, json=body(), headers=api_env.auth(status_only)) as response:
        assert response.status == 403
    assert produced(api_env) == []


async def test_over_the_rate_is_429_with_retry_after(api_env: ApiEnv) -> None:
    """A key with a burst of 3 at 0.5/s: the fourth call is 429 with Retry-After and RateLimit."""
    key = api_env.key(rate=0.5, burst=3)
    statuses = []
    for _ in range(4):
        async with api_env.http.post(
            f"{api_env.url}/v1/notifications", json=body(), headers=api_env.auth(key)
        ) as response:
            statuses.append(response.status)
            last = response
    assert statuses == [202, 202, 202, 429]
    assert int(last.headers["Retry-After"]) >= 1
    assert last.headers["RateLimit-Policy"] == '"default";q=3;w=6'


async def test_idempotency_key_gives_the_same_id_and_refuses_another_body(api_env: ApiEnv) -> None:
    """The same key and body twice: the same id both times. The same key with another body: 422."""
    key = api_env.key()
    headers = {**api_env.auth(key), "Idempotency-Key": f'"{uuid.uuid4()}"'}
    ids = []
    for _ in range(2):
        async with api_env.http.post(f"{api_env.url}/v1/notifications", json=body(), headers=headers) as r:
            assert r.status == 202
            ids.append((await r.json())["notification_id"])
    assert ids[0] == ids[1]
    async with api_env.http.post(
        f"{api_env.url}/v1/notifications", json=body(user_id="someone-else"), headers=headers
    ) as response:
        assert response.status == 422
        assert (await response.json())["type"].endswith("idempotency-key-reused")


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b"[" * 100_000, "application/json", 400),
        (b'{"user_id": 5}', "text/plain", 415),
    ],
)
async def test_unreadable_bodies_are_4xx_problems(
    api_env: ApiEnv, data: bytes, content_type: str, status: int
) -> None:
    """Bytes that are not a JSON object of the right media type: a 4xx problem, never a 5xx."""
    key = api_env.key()
    headers = {**api_env.auth(key), "Content-Type": content_type}
    async with api_env.http.post(f"{api_env.url}/v1/notifications", data=data, headers=headers) as response:
        assert response.status == status
        assert response.content_type == PROBLEM


async def test_a_body_over_the_limit_is_413(api_env: ApiEnv) -> None:
    """A body over NOTIFY_API_MAX_BODY_BYTES: 413 problem."""
    key = api_env.key()
    data = b'{"x": "' + b"a" * (api_env.settings.api_max_body_bytes + 10) + b'"}'
    headers = {**api_env.auth(key), "Content-Type": "application/json"}
    url = f"{api_env.url}/v1/notifications:batch"
    async with api_env.http.post(url, data=io.BytesIO(data), headers=headers) as r:
        assert r.status == 413
        assert r.content_type == PROBLEM


async def test_health_ready_metrics_and_unknown_routes(api_env: ApiEnv) -> None:
    """/healthz and /readyz answer 200 on a healthy stack; /metrics is Prometheus text with the
    request counter; an unknown path is a 404 problem and a wrong method a 405 problem."""
    async with api_env.http.get(f"{api_env.url}/healthz") as response:
        assert response.status == 200
    async with api_env.http.get(f"{api_env.url}/readyz") as response:
        assert response.status == 200
        assert (await response.json())["checks"] == {"database": True, "kafka": True}
    async with api_env.http.get(f"{api_env.url}/nope") as response:
        assert response.status == 404
        assert response.content_type == PROBLEM
    async with api_env.http.delete(f"{api_env.url}/v1/notifications") as response:
        assert response.status == 405
        assert response.content_type == PROBLEM
    async with api_env.http.get(f"{api_env.url}/metrics") as response:
        text = await response.text()
    assert "http_server_requests" in text
    assert 'http_route="/healthz"' in text


async def test_an_unreachable_broker_is_503_with_retry_after_never_a_hang(
    settings: Settings, db_schema: tuple[Settings, str]
) -> None:
    """With nothing listening where the broker should be, a send answers 503 with Retry-After
    within the produce timeout (plus a little), and /readyz says the broker is not ready."""
    dead = schema_settings(settings, db_schema[1], kafka_bootstrap="127.0.0.1:9", produce_timeout_s=2.0)
    runner = web.AppRunner(create_app(dead))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    pool = make_pool(dead, max_size=1)
    try:
        key = KeyStore(pool).create("billing", [Scope.SEND])[1]
        UserDataRepository(pool, cache_size=0).upsert_user("u-1")
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            async with http.post(
                f"http://{host}:{port}/v1/notifications",
                json=body(),
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "5"
                assert response.content_type == PROBLEM
            elapsed = time.monotonic() - started
            async with http.get(f"http://{host}:{port}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["checks"] == {"database": True, "kafka": False}
        print(f"\nunreachable broker: 503 after {elapsed:.2f} s (produce timeout 2 s)")
        assert elapsed < 10  # a bound against hanging, not a speed figure
    finally:
        pool.close()
        await runner.cleanup()


async def test_keys_made_listed_and_revoked_with_the_cli(api_env: ApiEnv) -> None:
    """`notify keys create` prints a key once that works; `list` shows it without the secret;
    after `revoke` (and the key cache's time) the key is 401."""
    env = {**os.environ, "NOTIFY_DATABASE_URL": api_env.settings.database_url.get_secret_value()}

    def notify(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "notify_cli", "keys", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    made = notify("create", "billing", "--scope", "send")
    token = made.splitlines()[-1].rsplit(" ", 1)[-1]
    key_id = json.loads(made.splitlines()[0])["key_id"]
    assert token.startswith(f"nfy_{key_id}_")
    listed = notify("list", "--service", "billing")
    assert key_id in listed
    assert token not in listed
    url = f"{api_env.url}/v1/notifications"
    async with api_env.http.post(url, json=body(), headers=api_env.auth(token)) as response:
        assert response.status == 202
    assert f"revoked {key_id}" in notify("revoke", key_id)
    await asyncio.sleep(api_env.settings.api_key_cache_s + 0.1)
    async with api_env.http.post(url, json=body(), headers=api_env.auth(token)) as response:
        assert response.status == 401


async def test_unknown_users_are_422_naming_each_and_nothing_is_sent(api_env: ApiEnv) -> None:
    """A single send to an unknown user, and a batch with two: 422 naming each user_id."""
    key = api_env.key()
    async with api_env.http.post(
        f"{api_env.url}/v1/notifications", json=body(user_id="ghost"), headers=api_env.auth(key)
    ) as response:
        assert response.status == 422
        assert [e["pointer"] for e in (await response.json())["errors"]] == ["/user_id"]
    items = [body(), body(user_id="ghost"), body(), body(user_id="ghost-2")]
    async with api_env.http.post(
        f"{api_env.url}/v1/notifications:batch", json={"notifications": items}, headers=api_env.auth(key)
    ) as response:
        assert response.status == 422
        pointers = [e["pointer"] for e in (await response.json())["errors"]]
    assert pointers == ["/notifications/1/user_id", "/notifications/3/user_id"]
    assert produced(api_env) == []


async def test_a_body_that_does_not_decompress_is_a_400_problem(api_env: ApiEnv) -> None:
    """Content-Encoding: gzip on bytes that are not gzip: 400 problem, not a 500."""
    headers = {**api_env.auth(api_env.key()), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with api_env.http.post(
        f"{api_env.url}/v1/notifications", data=b"not gzip at all", headers=headers
    ) as response:
        assert response.status == 400
        assert response.content_type == PROBLEM

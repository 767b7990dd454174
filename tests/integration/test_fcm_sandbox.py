"""The FCM adapter against the real sandbox on loopback: real HTTP, real OAuth grants signed by
google-auth with a test service-account key, real RS256 verification. No mocks; needs no Kafka.

Adapter tests prove the ``Outcome`` for every FCM errorCode, the shared OAuth token (one grant for
many sends, refreshed before expiry and after a 401) and the bounded connection pool; raw-HTTP tests
prove the sandbox answers the token endpoint and ``messages:send`` the way Google does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as google_exceptions

from consumers.delivery.fcm import MAX_PAYLOAD_BYTES, AccessToken, FcmAdapter, payload_size
from consumers.delivery.outcome import Outcome, Status
from notify_core.settings import Settings
from sandboxes.fcm import (
    FCM_ERRORS,
    FCM_SCOPE,
    GOOGLE_GRANT_AUDIENCE,
    JWT_BEARER,
    STALL,
    UNAUTHENTICATED,
    FcmSandbox,
    ServiceAccount,
    write_service_account,
)

pytestmark = pytest.mark.integration

TOKEN = "dGVzdC1kZXZpY2U:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338"
# errorCode → (Outcome status, deactivate_target), providers.md §3.
EXPECTED: dict[str, tuple[Status, bool]] = {
    "INVALID_ARGUMENT": (Status.PERMANENT, False),
    "THIRD_PARTY_AUTH_ERROR": (Status.PERMANENT, False),
    "SENDER_ID_MISMATCH": (Status.PERMANENT, True),
    "UNREGISTERED": (Status.PERMANENT, True),
    "QUOTA_EXCEEDED": (Status.RETRY, False),
    "INTERNAL": (Status.RETRY, False),
    "UNAVAILABLE": (Status.RETRY, False),
}

MakeAdapter = Callable[..., FcmAdapter]


def message(delivery_id: str = "d-1", target: str = TOKEN, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "delivery_id": delivery_id,
        "target": target,
        "title": "Hi",
        "body": "There",
        "data": {},
        "priority": "NORMAL",
        "expires_at": None,
    }
    return base | extra


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """One key for the module's trusted accounts: generating one per test would cost ~50 ms each."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[FcmSandbox]:
    sandbox = FcmSandbox()
    await sandbox.start()
    yield sandbox
    await sandbox.stop()


@pytest.fixture
def account(sandbox: FcmSandbox, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> ServiceAccount:
    return sandbox.create_service_account(tmp_path, key=rsa_key)


@pytest_asyncio.fixture
async def make_adapter(account: ServiceAccount, sandbox: FcmSandbox) -> AsyncIterator[MakeAdapter]:
    made: list[FcmAdapter] = []

    def make(
        *, credentials: Path | None = None, token_kwargs: dict[str, Any] | None = None, **overrides: Any
    ) -> FcmAdapter:
        token = AccessToken.from_file(credentials or account.path, timeout_s=5.0, **(token_kwargs or {}))
        kwargs: dict[str, Any] = {
            "endpoint": sandbox.endpoint,
            "project_id": sandbox.project_id,
            "token": token,
            "timeout_s": 5.0,
        }
        adapter = FcmAdapter(**(kwargs | overrides))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


# --- adapter ↔ sandbox ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_success_is_recorded_with_the_message_name(
    sandbox: FcmSandbox, make_adapter: MakeAdapter
) -> None:
    """A 200 is SENT with FCM's message name; the sandbox received exactly the FCM v1 message."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    outcome = await make_adapter().send(message(priority="HIGH", expires_at=expires, data={"order": "42"}))
    assert (outcome.status, outcome.reason) == (Status.SENT, "ok")
    assert (outcome.provider_message_id or "").startswith("projects/notify-sandbox/messages/")
    [received] = sandbox.recorder.all()
    assert (received.target, received.answered) == (TOKEN, "ok")
    android = received.payload.pop("android")
    assert received.payload == {
        "token": TOKEN,
        "notification": {"title": "Hi", "body": "There"},
        "data": {"order": "42"},
    }
    assert android["priority"] == "high"
    assert 3598 <= int(android["ttl"].removesuffix("s")) <= 3600


@pytest.mark.asyncio
async def test_expired_message_is_never_sent(sandbox: FcmSandbox, make_adapter: MakeAdapter) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    assert await make_adapter().send(message(expires_at=past)) == Outcome.permanent(
        "expired", detail="expires_at passed before the send"
    )
    assert sandbox.recorder.all() == []
    assert sandbox.token_requests == 0  # not even a token was fetched


@pytest.mark.asyncio
@pytest.mark.parametrize("error_code", sorted(FCM_ERRORS))
async def test_every_error_code_then_recovery(
    error_code: str, sandbox: FcmSandbox, make_adapter: MakeAdapter
) -> None:
    """Each FCM errorCode gives its Outcome; once the fault is cleared the next send succeeds."""
    adapter = make_adapter()
    sandbox.faults.add(error_code, target=TOKEN)
    outcome = await adapter.send(message())
    status, deactivate = EXPECTED[error_code]
    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (status, error_code, deactivate)
    assert outcome.detail is not None
    assert FCM_ERRORS[error_code][2] in outcome.detail  # Google's message, for the operator
    sandbox.faults.clear()
    assert (await adapter.send(message("d-2"))).status is Status.SENT
    assert [r.answered for r in sandbox.recorder.all()] == [error_code, "ok"]
    assert sandbox.token_requests == 1  # THIRD_PARTY_AUTH_ERROR is a 401, but not our token's fault


@pytest.mark.asyncio
@pytest.mark.parametrize("error_code", ["UNREGISTERED", "SENDER_ID_MISMATCH"])
async def test_dead_tokens_are_deactivated_other_targets_unaffected(
    error_code: str, sandbox: FcmSandbox, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter()
    sandbox.faults.add(error_code, prefix="dead-")
    dead, alive = await asyncio.gather(
        adapter.send(message("d-1", target="dead-" + TOKEN)), adapter.send(message("d-2"))
    )
    assert dead == Outcome.permanent(
        error_code, deactivate_target=True, detail=dead.detail
    )  # the worker deactivates target_ref on this flag
    assert alive.status is Status.SENT


@pytest.mark.asyncio
async def test_sandbox_rejects_a_malformed_token_as_fcm_does(
    sandbox: FcmSandbox, make_adapter: MakeAdapter
) -> None:
    """No fault injected: a token FCM could never have issued is INVALID_ARGUMENT, and deactivated."""
    outcome = await make_adapter().send(message(target="not a token"))
    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (
        Status.PERMANENT,
        "INVALID_ARGUMENT",
        True,
    )
    assert "not a valid FCM registration token" in (outcome.detail or "")
    too_big = await make_adapter().send(message("d-2", data={"blob": "x" * 4100}))
    assert (too_big.status, too_big.reason, too_big.deactivate_target) == (
        Status.PERMANENT,
        "INVALID_ARGUMENT",
        False,
    )


@pytest.mark.asyncio
async def test_oversized_payload_is_permanent_without_a_request(
    sandbox: FcmSandbox, make_adapter: MakeAdapter
) -> None:
    """Notification + data over 4096 bytes is INVALID_ARGUMENT (FCM's own answer, "Message is too
    big") before any request or token grant: no retries are spent on it. Exactly 4096 bytes is sent,
    and the sandbox, counting FCM's way, takes it."""
    adapter = make_adapter()
    room = MAX_PAYLOAD_BYTES - payload_size(message(data={"blob": ""}))
    too_big = await adapter.send(message("d-1", data={"blob": "x" * (room + 1)}))
    assert too_big == Outcome.permanent(
        "INVALID_ARGUMENT", detail="notification and data of 4097 bytes are over FCM's 4096; not sent"
    )
    assert not too_big.deactivate_target  # the token is fine; the message is not
    assert sandbox.recorder.all() == []
    assert sandbox.token_requests == 0
    at_limit = await adapter.send(message("d-2", data={"blob": "x" * room}))
    assert at_limit.status is Status.SENT
    assert [r.answered for r in sandbox.recorder.all()] == ["ok"]


@pytest.mark.asyncio
async def test_fault_for_n_sends_then_heals(sandbox: FcmSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter()
    sandbox.faults.add("UNAVAILABLE", target=TOKEN, times=2)
    outcomes = [await adapter.send(message(f"d-{i}")) for i in range(3)]
    assert [o.status for o in outcomes] == [Status.RETRY, Status.RETRY, Status.SENT]
    assert [r.answered for r in sandbox.recorder.all()] == ["UNAVAILABLE", "UNAVAILABLE", "ok"]


@pytest.mark.asyncio
async def test_retry_after_reaches_the_outcome(make_adapter: MakeAdapter, sandbox: FcmSandbox) -> None:
    """Retry-After from the sandbox lands in retry_after_s; QUOTA_EXCEEDED without one waits a minute."""
    adapter = make_adapter()
    sandbox.retry_after_s = {"QUOTA_EXCEEDED": 120, "UNAVAILABLE": 7}
    expected = {"QUOTA_EXCEEDED": 120.0, "UNAVAILABLE": 7.0, "INTERNAL": None}
    for error_code, retry_after in expected.items():
        sandbox.faults.add(error_code, times=1)
        outcome = await adapter.send(message())
        assert (outcome.status, outcome.reason, outcome.retry_after_s) == (
            Status.RETRY,
            error_code,
            retry_after,
        )
    sandbox.retry_after_s = {}
    sandbox.faults.add("QUOTA_EXCEEDED", times=1)
    assert (await adapter.send(message())).retry_after_s == 60.0


@pytest.mark.asyncio
async def test_stalled_send_times_out_as_retry(sandbox: FcmSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(timeout_s=0.3)
    sandbox.faults.add(STALL, times=1)
    started = time.monotonic()
    assert await adapter.send(message()) == Outcome.retry("timeout")
    # The stall never ends by itself, so only the client's timeout got us here; the bound is loose
    # on purpose (a hang guard, not a speed check).
    assert time.monotonic() - started < 10
    assert (await adapter.send(message("d-2"))).status is Status.SENT


@pytest.mark.asyncio
async def test_unreachable_endpoint_is_a_connection_error(make_adapter: MakeAdapter) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = make_adapter(endpoint=f"http://127.0.0.1:{port}")
    outcome = await adapter.send(message())
    assert (outcome.status, outcome.reason) == (Status.RETRY, "connection_error")


@pytest.mark.asyncio
async def test_wrong_project_is_permanent_without_deactivation(
    sandbox: FcmSandbox, make_adapter: MakeAdapter
) -> None:
    outcome = await make_adapter(project_id="someone-elses-project").send(message())
    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (
        Status.PERMANENT,
        "PERMISSION_DENIED",
        False,
    )


# --- OAuth ------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_token_serves_many_sends(sandbox: FcmSandbox, make_adapter: MakeAdapter) -> None:
    """100 concurrent first sends wait for one grant (single-flight); later sends reuse it."""
    adapter = make_adapter()
    first = await asyncio.gather(*(adapter.send(message(f"a-{i}")) for i in range(100)))
    later = [await adapter.send(message(f"b-{i}")) for i in range(20)]
    assert {o.status for o in first + later} == {Status.SENT}
    assert (sandbox.token_requests, sandbox.tokens_issued, adapter.token.refreshes) == (1, 1, 1)
    assert len({r.headers["x-sandbox-token"] for r in sandbox.recorder.all()}) == 1


@pytest.mark.asyncio
async def test_token_is_refreshed_before_it_expires(sandbox: FcmSandbox, make_adapter: MakeAdapter) -> None:
    clock = FakeClock()
    adapter = make_adapter(token_kwargs={"clock": clock, "refresh_margin_s": 300})
    assert (await adapter.send(message("d-1"))).status is Status.SENT
    clock.now += 3600 - 300 - 5  # still more than the margin left: reuse
    assert (await adapter.send(message("d-2"))).status is Status.SENT
    assert sandbox.token_requests == 1
    clock.now += 10  # inside the margin: a new token before the old one runs out
    assert (await adapter.send(message("d-3"))).status is Status.SENT
    assert sandbox.token_requests == 2
    tokens = [r.headers["x-sandbox-token"] for r in sandbox.recorder.all()]
    assert tokens[0] == tokens[1] != tokens[2]


@pytest.mark.asyncio
async def test_revoked_token_is_refreshed_and_the_send_retried_once(
    sandbox: FcmSandbox, make_adapter: MakeAdapter
) -> None:
    """A 401 without FcmError drops the token: one new grant, the same send succeeds."""
    adapter = make_adapter()
    assert (await adapter.send(message("d-1"))).status is Status.SENT
    sandbox.expire_tokens()
    outcomes = await asyncio.gather(*(adapter.send(message(f"d-{i}")) for i in range(2, 12)))
    assert {o.status for o in outcomes} == {Status.SENT}
    assert sandbox.token_requests == 2  # ten sends saw the 401, one refresh served them all
    answers = [r.answered for r in sandbox.recorder.all()]
    assert answers.count("ok") == 11
    assert set(answers) == {"ok", UNAUTHENTICATED}


@pytest.mark.asyncio
async def test_persistent_401_is_a_retry_after_one_refresh(
    sandbox: FcmSandbox, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter()
    sandbox.faults.add(UNAUTHENTICATED, times=2)
    outcome = await adapter.send(message())
    assert (outcome.status, outcome.reason) == (Status.RETRY, UNAUTHENTICATED)
    assert sandbox.token_requests == 2  # refreshed once, not in a loop
    assert (await adapter.send(message("d-2"))).status is Status.SENT
    assert sandbox.token_requests == 3  # the token the second 401 refused was dropped too


@pytest.mark.asyncio
async def test_bad_service_account_key_is_refused_clearly(
    sandbox: FcmSandbox, account: ServiceAccount, make_adapter: MakeAdapter, tmp_path: Path
) -> None:
    """A key file for the right account but the wrong key: invalid_grant, permanent (like the other
    channels' bad credentials), nothing sent, no hammering."""
    forged = write_service_account(
        tmp_path / "forged", token_uri=sandbox.token_uri, client_email=account.client_email
    )
    adapter = make_adapter(credentials=forged.path)
    outcome = await adapter.send(message())
    assert outcome == Outcome.permanent("oauth_invalid_grant", detail="invalid_grant: Invalid JWT Signature.")
    assert await adapter.send(message("d-2")) == outcome  # the remembered refusal is classified alike
    assert sandbox.token_requests == 1  # the refusal is remembered for a few seconds
    assert sandbox.recorder.all() == []
    with pytest.raises(google_exceptions.RefreshError, match="invalid_grant: Invalid JWT Signature"):
        await AccessToken.from_file(forged.path, timeout_s=5.0).get()

    stranger = write_service_account(
        tmp_path / "stranger",
        token_uri=sandbox.token_uri,
        client_email="who@elsewhere.iam.gserviceaccount.com",
    )
    with pytest.raises(google_exceptions.RefreshError, match="account not found"):
        await AccessToken.from_file(stranger.path, timeout_s=5.0).get()
    stranger_adapter = make_adapter(credentials=stranger.path)
    assert (await stranger_adapter.send(message("d-3"))).reason == "oauth_invalid_grant"
    assert sandbox.recorder.all() == []


def _assertion(account: ServiceAccount, key: rsa.RSAPrivateKey, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": account.client_email,
        "aud": GOOGLE_GRANT_AUDIENCE,
        "scope": FCM_SCOPE,
        "iat": now,
        "exp": now + 3600,
    }
    payload.update(claims)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return jwt.encode(
        {k: v for k, v in payload.items() if v is not None},
        pem,
        algorithm="RS256",
        headers={"kid": account.key_id},
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("claims", "error", "description"),
    [
        ({}, None, None),
        ({"aud": "https://example.com/token"}, "invalid_grant", "audience"),
        ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "invalid_grant", "short-lived"),
        ({"exp": int(time.time()) + 7200}, "invalid_grant", "short-lived"),
        ({"iat": int(time.time()) + 600, "exp": int(time.time()) + 900}, "invalid_grant", "short-lived"),
        ({"scope": "https://www.googleapis.com/auth/cloud-platform.read-only"}, "invalid_scope", "scope"),
        ({"scope": None}, "invalid_scope", "scope"),
        ({"iss": "nobody@example.iam.gserviceaccount.com"}, "invalid_grant", "account not found"),
    ],
)
async def test_token_endpoint_checks_the_grant_jwt(
    sandbox: FcmSandbox,
    account: ServiceAccount,
    rsa_key: rsa.RSAPrivateKey,
    claims: dict[str, Any],
    error: str | None,
    description: str | None,
) -> None:
    """Raw HTTP to POST /token: the JWT-bearer grant is verified (signature, aud, iat/exp, scope)."""
    form = {"grant_type": JWT_BEARER, "assertion": _assertion(account, rsa_key, **claims)}
    async with aiohttp.ClientSession() as http, http.post(sandbox.token_uri, data=form) as response:
        body = await response.json()
    if error is None:
        assert response.status == 200
        assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
        assert body["access_token"]
    else:
        assert (response.status, body["error"]) == (400, error)
        assert description is not None
        assert description in body["error_description"]


@pytest.mark.asyncio
async def test_token_endpoint_refuses_other_grants_and_garbage(sandbox: FcmSandbox) -> None:
    cases = [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": JWT_BEARER}, "invalid_request"),
        ({"grant_type": JWT_BEARER, "assertion": "not.a.jwt"}, "invalid_grant"),
    ]
    async with aiohttp.ClientSession() as http:
        for form, error in cases:
            async with http.post(sandbox.token_uri, data=form) as response:
                assert (response.status, (await response.json())["error"]) == (400, error)


# --- messages:send over raw HTTP ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_endpoint_validates_like_fcm(sandbox: FcmSandbox, account: ServiceAccount) -> None:
    """Unknown bearer → bare 401; bad shapes → 400 INVALID_ARGUMENT with Google's details."""
    token = AccessToken.from_file(account.path, timeout_s=5.0)
    url = f"{sandbox.endpoint}/v1/projects/{sandbox.project_id}/messages:send"
    auth = {"Authorization": f"Bearer {await token.get()}"}
    cases: list[tuple[dict[str, str], Any, int, str, str]] = [
        ({"Authorization": "Bearer ya29.forged"}, {"message": {"token": TOKEN}}, 401, "UNAUTHENTICATED", ""),
        ({}, {"message": {"token": TOKEN}}, 401, "UNAUTHENTICATED", ""),
        (auth, {"message": {}}, 400, "INVALID_ARGUMENT", "FcmError"),
        (auth, {"message": {"token": TOKEN, "topic": "news"}}, 400, "INVALID_ARGUMENT", "FcmError"),
        (auth, {"message": {"token": TOKEN, "data": {"n": 42}}}, 400, "INVALID_ARGUMENT", "BadRequest"),
        (auth, {"message": {"token": TOKEN, "data": {"from": "x"}}}, 400, "INVALID_ARGUMENT", "FcmError"),
        (
            auth,
            {"message": {"token": TOKEN, "android": {"ttl": "3600"}}},
            400,
            "INVALID_ARGUMENT",
            "BadRequest",
        ),
        (
            auth,
            {"message": {"token": TOKEN, "android": {"ttl": "2419201s"}}},
            400,
            "INVALID_ARGUMENT",
            "FcmError",
        ),
        (auth, {"message": {"token": TOKEN, "android": {"priority": "urgent"}}}, 400, "INVALID_ARGUMENT", ""),
        (auth, [1, 2], 400, "INVALID_ARGUMENT", "BadRequest"),
    ]
    async with aiohttp.ClientSession() as http:
        for headers, body, status, rpc_status, detail_type in cases:
            async with http.post(url, json=body, headers=headers) as response:
                error = (await response.json())["error"]
            assert (response.status, error["code"], error["status"]) == (status, status, rpc_status), body
            types = " ".join(d["@type"] for d in error.get("details", ()))
            assert detail_type in types, body
            if status == 401:
                assert "details" not in error  # no FcmError: the client should refresh its token
        ok = {"message": {"token": TOKEN, "data": {"k": "v"}, "android": {"priority": "high", "ttl": "0s"}}}
        async with http.post(url, json=ok, headers=auth) as response:
            assert response.status == 200
            assert (await response.json())["name"].startswith(f"projects/{sandbox.project_id}/messages/")
        dry_run = ok | {"validate_only": True}
        async with http.post(url, json=dry_run, headers=auth) as response:
            assert (await response.json())["name"].endswith("/messages/fake_message_id")
    assert len(sandbox.recorder.all()) == len(cases) + 2  # every request is recorded, refused or not
    assert [r.answered for r in sandbox.recorder.all()[-2:]] == ["ok", "validated"]
    assert len(sandbox.recorder.delivered()) == 1
    await token.close()


# --- scale and threads --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_200_concurrent_sends_on_a_bounded_pool(sandbox: FcmSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(max_connections=8)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(adapter.send(message(f"d-{i}", data={"i": str(i)})) for i in range(200))),
        timeout=10,
    )
    assert {o.status for o in outcomes} == {Status.SENT}
    assert len({o.provider_message_id for o in outcomes}) == 200
    assert sorted(int(r.payload["data"]["i"]) for r in sandbox.recorder.delivered()) == list(range(200))
    assert 1 <= len(sandbox.connections) <= 8  # keep-alive connections, never more than the limit
    assert sandbox.token_requests == 1


def test_threaded_sandbox_and_adapter_from_settings(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    """How the worker builds it: settings name the endpoint, project and key file (token_uri inside)."""
    with FcmSandbox.run_in_thread(project_id="demo-project") as running:
        account = running.create_service_account(tmp_path, key=rsa_key)
        settings = Settings(
            fcm_endpoint=running.endpoint,
            fcm_project_id="demo-project",
            fcm_credentials_file=account.path,
            fcm_timeout_s=5.0,
        )

        async def deliver() -> list[Outcome]:
            adapter = FcmAdapter.from_settings(settings, max_connections=4)
            try:
                running.faults.add("UNREGISTERED", target="gone-token")
                return list(
                    await asyncio.gather(
                        adapter.send(message("d-1")), adapter.send(message("d-2", target="gone-token"))
                    )
                )
            finally:
                await adapter.close()

        sent, gone = asyncio.run(deliver())
        assert sent.status is Status.SENT
        assert (gone.reason, gone.deactivate_target) == ("UNREGISTERED", True)
        assert sorted(r.answered for r in running.recorder.all()) == ["UNREGISTERED", "ok"]
        assert running.sandbox.token_requests == 1


def test_from_settings_needs_a_key_file() -> None:
    with pytest.raises(ValueError, match="NOTIFY_FCM_CREDENTIALS_FILE"):
        FcmAdapter.from_settings(Settings(fcm_credentials_file=None))

"""The APNs adapter against the real sandbox on loopback: real TLS, real HTTP/2, real JWTs, no mocks.

Needs no Kafka. Raw-frame tests speak h2 directly to prove the sandbox answers the way aioapns (and
Apple) expect; adapter tests prove the Outcome for every reason in Apple's table.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded

from consumers.delivery.apns import MAX_PAYLOAD_BYTES, ApnsAdapter, apns_id_for, payload_size
from consumers.delivery.outcome import Outcome, Status
from sandboxes.apns import REASON_STATUS, STALL, ApnsSandbox
from sandboxes.tls import Es256Key, client_context, generate_es256_key

pytestmark = pytest.mark.integration

KEY_ID, TEAM_ID, TOPIC = "KEYID12345", "TEAM123456", "com.example.notify"
TOKEN = "ab" * 32
RETRYABLE = {
    "IdleTimeout",
    "ExpiredProviderToken",
    "TooManyProviderTokenUpdates",
    "TooManyRequests",
    "InternalServerError",
    "ServiceUnavailable",
    "Shutdown",
}
DEACTIVATES = {"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered", "ExpiredToken"}
ROOT = Path(__file__).resolve().parents[2]

StartSandbox = Callable[..., Awaitable[ApnsSandbox]]
MakeAdapter = Callable[..., ApnsAdapter]


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


@pytest.fixture(scope="module")
def key() -> Es256Key:
    return generate_es256_key()


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest_asyncio.fixture
async def start_sandbox(key: Es256Key, cert_dir: Path) -> AsyncIterator[StartSandbox]:
    started: list[ApnsSandbox] = []

    async def start(**overrides: Any) -> ApnsSandbox:
        kwargs: dict[str, Any] = {
            "public_key_pem": key.public_pem,
            "key_id": KEY_ID,
            "team_id": TEAM_ID,
            "cert_dir": cert_dir,
        }
        sandbox = ApnsSandbox(**(kwargs | overrides))
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        await sandbox.stop()


@pytest_asyncio.fixture
async def sandbox(start_sandbox: StartSandbox) -> ApnsSandbox:
    return await start_sandbox()


@pytest_asyncio.fixture
async def make_adapter(start_sandbox: StartSandbox, key: Es256Key) -> AsyncIterator[MakeAdapter]:
    made: list[ApnsAdapter] = []

    def make(sandbox: ApnsSandbox, **overrides: Any) -> ApnsAdapter:
        kwargs: dict[str, Any] = {
            "endpoint": sandbox.endpoint,
            "key_pem": key.private_pem,
            "key_id": KEY_ID,
            "team_id": TEAM_ID,
            "topic": TOPIC,
            "ca_file": sandbox.ca_path,
            "timeout_s": 5.0,
        }
        adapter = ApnsAdapter(**(kwargs | overrides))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


# --- adapter ↔ sandbox ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_success_records_exactly_one_request(sandbox: ApnsSandbox, make_adapter: MakeAdapter) -> None:
    """A 200 is SENT with the apns-id derived from the delivery id; the sandbox saw every header."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    outcome = await make_adapter(sandbox).send(
        message(priority="HIGH", expires_at=expires, data={"order": "42"}, collapse_id="c-1")
    )
    assert outcome == Outcome.sent(apns_id_for("d-1"))
    [received] = sandbox.recorder.all()
    assert (received.target, received.answered) == (TOKEN, "ok")
    assert received.payload == {"order": "42", "aps": {"alert": {"title": "Hi", "body": "There"}}}
    headers = received.headers
    assert headers["apns-id"] == apns_id_for("d-1")
    assert (headers["apns-push-type"], headers["apns-priority"], headers["apns-topic"]) == (
        "alert",
        "10",
        TOPIC,
    )
    assert headers["apns-collapse-id"] == "c-1"
    assert abs(int(headers["apns-expiration"]) - int(expires.timestamp())) <= 1


@pytest.mark.asyncio
async def test_low_priority_without_expiry(sandbox: ApnsSandbox, make_adapter: MakeAdapter) -> None:
    """LOW sends apns-priority 5; no expires_at sends no apns-expiration; a past one is not sent at all."""
    adapter = make_adapter(sandbox)
    assert (await adapter.send(message(priority="LOW"))).status is Status.SENT
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    assert await adapter.send(message("d-2", expires_at=past)) == Outcome.permanent(
        "expired", detail="expires_at passed before the send"
    )
    [received] = sandbox.recorder.all()
    assert received.headers["apns-priority"] == "5"
    assert "apns-expiration" not in received.headers


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", sorted(REASON_STATUS))
async def test_every_reason_then_recovery(
    reason: str, sandbox: ApnsSandbox, make_adapter: MakeAdapter
) -> None:
    """Each reason Apple documents gives its Outcome; once the fault is cleared the next send succeeds."""
    adapter = make_adapter(sandbox)
    sandbox.faults.add(reason, target=TOKEN)
    outcome = await adapter.send(message())
    expected = Status.RETRY if reason in RETRYABLE else Status.PERMANENT
    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (
        expected,
        reason,
        reason in DEACTIVATES,
    )
    if REASON_STATUS[reason] == 410:
        assert "since" in (outcome.detail or "")  # Apple's timestamp came through
    sandbox.faults.clear()
    assert (await adapter.send(message("d-2"))).status is Status.SENT
    assert [r.answered for r in sandbox.recorder.all()] == [reason, "ok"]
    reconnected = reason in {"Shutdown", "IdleTimeout"}  # the sandbox closes the connection after these
    assert sandbox.connections_opened == (2 if reconnected else 1)


@pytest.mark.asyncio
async def test_sandbox_validates_the_token(sandbox: ApnsSandbox, make_adapter: MakeAdapter) -> None:
    """Without injected faults: a non-hex token is BadDeviceToken (the sandbox's 413 for a payload over
    4096 bytes is proven over raw HTTP/2 below; the adapter no longer sends one)."""
    adapter = make_adapter(sandbox)
    bad_token = await adapter.send(message(target="not-a-token"))
    assert (bad_token.status, bad_token.reason, bad_token.deactivate_target) == (
        Status.PERMANENT,
        "BadDeviceToken",
        True,
    )
    assert [r.answered for r in sandbox.recorder.all()] == ["BadDeviceToken"]


@pytest.mark.asyncio
async def test_oversized_payload_is_permanent_without_a_request(
    sandbox: ApnsSandbox, make_adapter: MakeAdapter
) -> None:
    """Over 4096 bytes is PayloadTooLarge (Apple's own reason) before any request: no retries are
    spent on it, and the sandbox sees nothing. Exactly 4096 bytes is sent, and Apple's limit holds it:
    the adapter measures the very bytes aioapns sends."""
    adapter = make_adapter(sandbox)
    room = MAX_PAYLOAD_BYTES - payload_size(message(data={"blob": ""}))
    too_large = await adapter.send(message("d-1", data={"blob": "x" * (room + 1)}))
    assert too_large == Outcome.permanent(
        "PayloadTooLarge", detail="payload of 4097 bytes is over APNs' 4096; not sent"
    )
    unicode = await adapter.send(message("d-2", body="ü" * 2100))  # 4200 bytes as UTF-8
    assert (unicode.status, unicode.reason, unicode.deactivate_target) == (
        Status.PERMANENT,
        "PayloadTooLarge",
        False,
    )
    assert sandbox.recorder.all() == []
    assert sandbox.connections_opened == 0
    at_limit = await adapter.send(message("d-3", data={"blob": "x" * room}))
    assert at_limit.status is Status.SENT
    [received] = sandbox.recorder.all()
    assert received.answered == "ok"


@pytest.mark.asyncio
async def test_one_jwt_across_connections(start_sandbox: StartSandbox, make_adapter: MakeAdapter) -> None:
    """200 concurrent sends, then again over new connections: all arrive, all under one JWT, no 429."""
    sandbox = await start_sandbox(jwt_scope="team")  # stricter than Apple's per-connection rule
    adapter = make_adapter(sandbox, max_connections=4)
    first = await asyncio.gather(*(adapter.send(message(f"a-{i}")) for i in range(200)))
    await sandbox.drop_connections()
    second = await asyncio.gather(*(adapter.send(message(f"b-{i}")) for i in range(200)))
    assert {o.status for o in first + second} == {Status.SENT}
    received = sandbox.recorder.all()
    assert len(received) == 400
    assert {r.answered for r in received} == {"ok"}
    assert len({r.headers["apns-id"] for r in received}) == 400
    assert len({r.headers["x-sandbox-jwt"] for r in received}) == 1
    assert sandbox.connections_opened >= 2


@pytest.mark.asyncio
async def test_team_scope_catches_a_second_token(
    start_sandbox: StartSandbox, make_adapter: MakeAdapter
) -> None:
    """Two token minters for one team (what stock aioapns does per connection) get 429 and retry."""
    sandbox = await start_sandbox(jwt_scope="team")
    assert (await make_adapter(sandbox).send(message())).status is Status.SENT
    second = await make_adapter(sandbox).send(message("d-2"))
    assert (second.status, second.reason) == (Status.RETRY, "TooManyProviderTokenUpdates")


@pytest.mark.asyncio
async def test_expired_jwt_is_refused_then_replaced(sandbox: ApnsSandbox, make_adapter: MakeAdapter) -> None:
    """A JWT over an hour old gets 403 ExpiredProviderToken (retry); a fresh one then succeeds."""
    skew = [3700.0]
    adapter = make_adapter(sandbox, clock=lambda: time.time() - skew[0])
    expired = await adapter.send(message())
    assert (expired.status, expired.reason) == (Status.RETRY, "ExpiredProviderToken")
    skew[0] = 0.0
    assert (await adapter.send(message())).status is Status.SENT
    assert [r.answered for r in sandbox.recorder.all()] == ["ExpiredProviderToken", "ok"]


@pytest.mark.asyncio
async def test_injected_expired_token_forces_one_new_jwt(
    sandbox: ApnsSandbox, make_adapter: MakeAdapter
) -> None:
    """After ExpiredProviderToken the adapter mints a new JWT, which the sandbox accepts at once."""
    adapter = make_adapter(sandbox)
    sandbox.faults.add("ExpiredProviderToken", times=3)
    outcomes = await asyncio.gather(*(adapter.send(message(f"d-{i}")) for i in range(3)))
    assert {o.reason for o in outcomes} == {"ExpiredProviderToken"}
    assert (await adapter.send(message("d-9"))).status is Status.SENT
    tokens = [r.headers["x-sandbox-jwt"] for r in sandbox.recorder.all()]
    assert len(set(tokens[:3])) == 1
    assert tokens[3] != tokens[0]


@pytest.mark.asyncio
@pytest.mark.parametrize(("key_id", "other_key"), [("KEYID99999", False), (KEY_ID, True)])
async def test_wrong_key_is_a_configuration_error(
    key_id: str, other_key: bool, sandbox: ApnsSandbox, make_adapter: MakeAdapter
) -> None:
    """A JWT with an unknown kid, or signed by another key, is 403 InvalidProviderToken: permanent."""
    overrides: dict[str, Any] = {"key_id": key_id}
    if other_key:
        overrides["key_pem"] = generate_es256_key().private_pem
    outcome = await make_adapter(sandbox, **overrides).send(message())
    assert (outcome.status, outcome.reason) == (Status.PERMANENT, "InvalidProviderToken")


@pytest.mark.asyncio
async def test_error_answers_beyond_the_receive_window(
    sandbox: ApnsSandbox, make_adapter: MakeAdapter
) -> None:
    """2600 error bodies (> 64 KiB) on one connection: flow control is returned, nothing stalls."""
    adapter = make_adapter(sandbox, max_connections=1, timeout_s=20.0)
    sandbox.faults.add("BadDeviceToken")
    outcomes = await asyncio.gather(*(adapter.send(message(f"d-{i}")) for i in range(2600)))
    assert {o.reason for o in outcomes} == {"BadDeviceToken"}
    assert sandbox.connections_opened == 1


@pytest.mark.asyncio
async def test_timeout_leaves_the_connection_usable(sandbox: ApnsSandbox, make_adapter: MakeAdapter) -> None:
    """An unanswered send times out as a retry; the same connection carries the next send."""
    adapter = make_adapter(sandbox, timeout_s=0.3)
    sandbox.faults.add(STALL, times=1)
    assert await adapter.send(message()) == Outcome.retry("timeout")
    assert (await adapter.send(message("d-2"))).status is Status.SENT
    assert sandbox.connections_opened == 1


@pytest.mark.asyncio
async def test_nothing_listening_is_a_connection_error(
    sandbox: ApnsSandbox, make_adapter: MakeAdapter
) -> None:
    """A refused connection is retryable (aioapns gives up after its attempts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = make_adapter(sandbox, endpoint=f"https://127.0.0.1:{port}", max_connection_attempts=1)
    outcome = await adapter.send(message())
    assert (outcome.status, outcome.reason) == (Status.RETRY, "connection_error")


_CHILD = """
import asyncio, json, sys
from consumers.delivery.apns import ApnsAdapter

async def main() -> None:
    endpoint, ca, key_file = sys.argv[1:4]
    adapter = ApnsAdapter(endpoint=endpoint, key_pem=open(key_file).read(), key_id="KEYID12345",
                          team_id="TEAM123456", topic="com.example.notify", ca_file=ca, timeout_s=5)
    msg = {"delivery_id": "p-1", "target": "ab" * 32, "title": "T", "body": "B", "data": {}}
    outcome = await adapter.send(msg)
    await adapter.close()
    print(json.dumps([outcome.status, outcome.provider_message_id]))

asyncio.run(main())
"""


def test_sandbox_thread_serves_another_process(key: Es256Key, cert_dir: Path, tmp_path: Path) -> None:
    """A sandbox on its own thread takes a send from a subprocess and records it for this process."""
    key_file = tmp_path / "key.p8"
    key_file.write_text(key.private_pem)
    with ApnsSandbox.run_in_thread(
        public_key_pem=key.public_pem, key_id=KEY_ID, team_id=TEAM_ID, cert_dir=cert_dir
    ) as handle:
        endpoint = f"https://127.0.0.1:{handle.port}"
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, endpoint, str(handle.ca_path), str(key_file)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        )
        assert json.loads(done.stdout) == ["sent", apns_id_for("p-1")]
        [received] = handle.sandbox.recorder.all()
        assert received.headers["apns-id"] == apns_id_for("p-1")


# --- raw HTTP/2 against the sandbox -----------------------------------------------------------------


@dataclass
class RawResponse:
    headers: dict[str, str] = field(default_factory=dict)
    data_frames: list[bytes] = field(default_factory=list)
    ended_with_headers: bool = False

    @property
    def status(self) -> int:
        return int(self.headers[":status"])

    @property
    def body(self) -> dict[str, Any]:
        [frame] = self.data_frames
        parsed: dict[str, Any] = json.loads(frame)
        return parsed


class RawClient:
    """A bare h2 client: one request at a time, every frame of the answer kept."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h2 = H2Connection()
        self.h2.initiate_connection()
        self.writer.write(self.h2.data_to_send())

    @classmethod
    async def connect(cls, sandbox: ApnsSandbox, alpn: Sequence[str] = ()) -> RawClient:
        ctx = client_context(sandbox.ca_path, alpn=alpn)
        reader, writer = await asyncio.open_connection("127.0.0.1", sandbox.port, ssl=ctx)
        return cls(reader, writer)

    async def request(self, headers: list[tuple[str, str]], body: bytes = b"") -> RawResponse:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=True)
        self.writer.write(self.h2.data_to_send())
        response = RawResponse()
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            assert data, "connection closed before the answer"
            ended = False
            for event in self.h2.receive_data(data):
                if getattr(event, "stream_id", None) != stream_id:
                    continue
                if isinstance(event, ResponseReceived):
                    response.headers = {_s(k): _s(v) for k, v in event.headers or ()}
                    response.ended_with_headers = event.stream_ended is not None
                elif isinstance(event, DataReceived):
                    response.data_frames.append(event.data)
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, StreamEnded):
                    ended = True
            self.writer.write(self.h2.data_to_send())
            if ended:
                return response

    async def close(self) -> None:
        self.h2.close_connection()
        self.writer.write(self.h2.data_to_send())
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def bearer(key: Es256Key, *, age_s: float = 0, kid: str = KEY_ID) -> str:
    claims = {"iss": TEAM_ID, "iat": int(time.time() - age_s)}
    return "bearer " + jwt.encode(claims, key.private_pem, algorithm="ES256", headers={"kid": kid})


def request_headers(
    auth: str | None, *, topic: bool = True, apns_id: str | None = None
) -> list[tuple[str, str]]:
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", f"/3/device/{TOKEN}"),
        (":authority", "x"),
    ]
    if auth is not None:
        headers.append(("authorization", auth))
    if topic:
        headers.append(("apns-topic", TOPIC))
    if apns_id is not None:
        headers.append(("apns-id", apns_id))
    return headers


PAYLOAD = b'{"aps": {"alert": "hi"}}'


@pytest_asyncio.fixture
async def raw(sandbox: ApnsSandbox) -> AsyncIterator[RawClient]:
    client = await RawClient.connect(sandbox)  # no ALPN, as aioapns connects
    yield client
    await client.close()


@pytest.mark.asyncio
async def test_raw_success_is_headers_only(raw: RawClient, key: Es256Key) -> None:
    """200 is one HEADERS frame with END_STREAM; apns-id is echoed, or generated when absent."""
    sent_id, token = str(uuid.uuid4()), bearer(key)
    echoed = await raw.request(request_headers(token, apns_id=sent_id), PAYLOAD)
    assert (echoed.status, echoed.ended_with_headers, echoed.data_frames) == (200, True, [])
    assert echoed.headers["apns-id"] == sent_id
    generated = await raw.request(request_headers(token), PAYLOAD)
    assert generated.status == 200
    assert uuid.UUID(generated.headers["apns-id"])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("auth", "topic", "body", "status", "reason"),
    [
        (None, True, PAYLOAD, 403, "MissingProviderToken"),
        ("expired", True, PAYLOAD, 403, "ExpiredProviderToken"),
        ("bad-kid", True, PAYLOAD, 403, "InvalidProviderToken"),
        ("valid", False, PAYLOAD, 400, "MissingTopic"),
        ("valid", True, b"", 400, "PayloadEmpty"),
        ("valid", True, b"{" + b" " * 4096 + b"}", 413, "PayloadTooLarge"),
    ],
)
async def test_raw_errors_are_one_json_data_frame(
    raw: RawClient, key: Es256Key, auth: str | None, topic: bool, body: bytes, status: int, reason: str
) -> None:
    """Hand-crafted bad requests: HEADERS, then exactly one DATA frame holding {"reason": ...}."""
    tokens = {
        "valid": bearer(key),
        "expired": bearer(key, age_s=3601),
        "bad-kid": bearer(key, kid="OTHER00000"),
    }
    response = await raw.request(request_headers(tokens.get(auth or ""), topic=topic), body)
    assert (response.status, response.ended_with_headers) == (status, False)
    assert response.body == {"reason": reason}
    assert uuid.UUID(response.headers["apns-id"])


@pytest.mark.asyncio
async def test_raw_gone_has_timestamp(raw: RawClient, key: Es256Key, sandbox: ApnsSandbox) -> None:
    """410 Unregistered carries Apple's millisecond timestamp; other errors do not."""
    sandbox.faults.add("Unregistered", times=1)
    before = int(time.time() * 1000)
    body = (await raw.request(request_headers(bearer(key)), PAYLOAD)).body
    assert body["reason"] == "Unregistered"
    assert before <= body["timestamp"] <= int(time.time() * 1000)


@pytest.mark.asyncio
async def test_raw_token_swap_on_one_connection_is_429(raw: RawClient, key: Es256Key) -> None:
    """A second, newer JWT within 20 minutes on the same connection: 429 TooManyProviderTokenUpdates."""
    assert (await raw.request(request_headers(bearer(key, age_s=10)), PAYLOAD)).status == 200
    swapped = await raw.request(request_headers(bearer(key)), PAYLOAD)
    assert (swapped.status, swapped.body) == (429, {"reason": "TooManyProviderTokenUpdates"})


@pytest.mark.asyncio
async def test_alpn_h2_is_offered(sandbox: ApnsSandbox, key: Es256Key) -> None:
    """A client that asks for ALPN h2 gets it (aioapns asks for none, which the other tests cover)."""
    client = await RawClient.connect(sandbox, alpn=["h2"])
    try:
        ssl_object = client.writer.get_extra_info("ssl_object")
        assert ssl_object.selected_alpn_protocol() == "h2"
        assert (await client.request(request_headers(bearer(key)), PAYLOAD)).status == 200
    finally:
        await client.close()

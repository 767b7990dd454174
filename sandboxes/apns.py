"""APNs provider-API sandbox: HTTP/2 over TLS on loopback, answering like api.push.apple.com.

Contract (what a client sees):

- ``POST /3/device/<hex token>`` with ``authorization: bearer <ES256 JWT>`` (``kid`` = key id, ``iss`` =
  team id, signed by the configured key), ``apns-topic`` and a JSON object body of at most 4096 bytes
  (5120 for voip) answers ``200`` as one HEADERS frame with END_STREAM and no DATA.
- Errors answer HEADERS then exactly one DATA frame ``{"reason": ...}`` (plus ``"timestamp"`` in ms
  for 410) with END_STREAM: the framing aioapns depends on. ``apns-id`` is always echoed, or
  generated when the request had none. ``REASON_STATUS`` is Apple's table of reasons.
- JWT rules: missing → 403 MissingProviderToken, bad signature/kid/iss → 403 InvalidProviderToken,
  ``iat`` older than an hour → 403 ExpiredProviderToken, a token replaced by one minted less than 20
  minutes later → 429 TooManyProviderTokenUpdates. ``jwt_scope="connection"`` applies that rule per
  connection (Apple's documented rule); ``"team"`` applies it across all connections, which catches
  clients that mint one token per connection. A token rejected as expired or invalid may be replaced.
- ``faults`` picks an injected reason by device token after the request passed validation; any name
  of ``REASON_STATUS`` answers with its status (unknown names answer 400). ``Shutdown`` and
  ``IdleTimeout`` then close the connection with GOAWAY. ``STALL`` (sandbox-only) never answers.
- Every request is recorded in ``recorder`` (target = device token, payload = parsed body).
- Flow control: received data is acknowledged at once; an error body waits for send window.
  SETTINGS_MAX_CONCURRENT_STREAMS is advertised (1000) and enforced from the first frame.

Run it in a test's event loop (``await start()``/``await stop()``) or on a thread of its own
(``ApnsSandbox.run_in_thread(...)``) when the sender is another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from sandboxes.faults import FaultPlan, Received, Recorder
from sandboxes.threaded import ServingThread
from sandboxes.tls import CertPaths, ensure_certs, server_context

_APPLE_TABLE = (
    (400, "BadCollapseId BadDeviceToken BadExpirationDate BadMessageId BadPriority BadTopic"),
    (400, "DeviceTokenNotForTopic DuplicateHeaders IdleTimeout InvalidPushType MissingDeviceToken"),
    (400, "MissingTopic PayloadEmpty TopicDisallowed"),
    (403, "BadCertificate BadCertificateEnvironment ExpiredProviderToken Forbidden InvalidProviderToken"),
    (403, "MissingProviderToken UnrelatedKeyIdInToken BadEnvironmentKeyIdInToken"),
    (404, "BadPath"),
    (405, "MethodNotAllowed"),
    (410, "ExpiredToken Unregistered"),
    (413, "PayloadTooLarge"),
    (429, "TooManyProviderTokenUpdates TooManyRequests"),
    (500, "InternalServerError"),
    (503, "ServiceUnavailable Shutdown"),
)
REASON_STATUS: dict[str, int] = {reason: status for status, names in _APPLE_TABLE for reason in names.split()}
STALL = "Stall"
JwtScope = Literal["connection", "team"]

_CLOSES_CONNECTION = frozenset({"Shutdown", "IdleTimeout"})
_KILLS_TOKEN = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})
_PUSH_TYPES = "alert background voip complication fileprovider mdm liveactivity location pushtotalk"
_RECORDED = ("apns-push-type", "apns-priority", "apns-expiration", "apns-collapse-id", "apns-topic")
_TOKEN_MAX_AGE_S = 3600
_TOKEN_MIN_REFRESH_S = 20 * 60
_CONNECTION_WINDOW = 16 * 1024 * 1024


@dataclass
class _TokenState:
    token: str | None = None
    iat: float = 0.0
    dead: bool = False


@dataclass
class _Stream:
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)
    size: int = 0


@dataclass(frozen=True)
class _Request:
    headers: dict[str, str]
    duplicate: bool
    token: str
    apns_id: str
    bearer: str
    size: int
    payload: Any

    @classmethod
    def parse(cls, stream: _Stream) -> _Request:
        headers: dict[str, str] = {}
        duplicate = False
        for name, value in stream.headers:
            duplicate |= name in headers
            headers[name] = value
        path = headers.get(":path", "")
        payload: Any = None
        if 0 < stream.size <= len(stream.body):
            with contextlib.suppress(ValueError):
                payload = json.loads(stream.body)
        return cls(
            headers,
            duplicate,
            token=path.removeprefix("/3/device/") if path.startswith("/3/device/") else "",
            apns_id=headers.get("apns-id") or str(uuid.uuid4()),
            bearer=headers.get("authorization", ""),
            size=stream.size,
            payload=payload,
        )


class ApnsSandbox:
    """One APNs endpoint on ``host:port`` (0 = pick a free port), trusting one signing key."""

    def __init__(
        self,
        *,
        public_key_pem: str,
        key_id: str,
        team_id: str,
        cert_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent_streams: int = 1000,
        jwt_scope: JwtScope = "connection",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.faults = FaultPlan()
        self.recorder = Recorder()
        self.connections_opened = 0
        self.max_concurrent_streams = max_concurrent_streams
        self._certs: CertPaths = ensure_certs(cert_dir)
        self._public_key = load_pem_public_key(public_key_pem.encode())
        self._key_id, self._team_id, self._scope, self._clock = key_id, team_id, jwt_scope, clock
        self._host, self._port = host, port
        self._verified: dict[str, tuple[str | None, float]] = {}  # token → (rejection, iat)
        self._team_token = _TokenState()
        self._server: asyncio.Server | None = None
        self._live: set[_Connection] = set()

    @property
    def port(self) -> int:
        return self._port

    @property
    def ca_path(self) -> Path:
        return self._certs.ca_cert

    @property
    def endpoint(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self._host, self._port, ssl=server_context(self._certs)
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def drop_connections(self) -> None:
        """GOAWAY and close every open connection, as Apple does when a server goes away."""
        live = list(self._live)
        for conn in live:
            conn.goaway("Shutdown")
        if live:
            _, stuck = await asyncio.wait([c.closed for c in live], timeout=2)
            for conn in live:
                if conn.closed in stuck:
                    conn.abort()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_connections()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @classmethod
    def run_in_thread(cls, **kwargs: Any) -> SandboxThread:
        """Start a sandbox on a daemon thread with its own event loop; ``kwargs`` as for ``__init__``."""
        return SandboxThread(cls(**kwargs), "apns-sandbox")

    # --- one request ------------------------------------------------------------------------------
    def answer(self, conn: _Connection, stream: _Stream) -> tuple[int, str | None, str] | None:
        """(status, reason, apns-id) for a complete request, or None to leave it unanswered."""
        req = _Request.parse(stream)
        reason = self._check(conn, req) or self.faults.pick(req.token)
        recorded = {k: req.headers[k] for k in _RECORDED if k in req.headers}
        recorded.update({"apns-id": req.apns_id, "x-sandbox-connection": str(conn.number)})
        if req.bearer:
            recorded["x-sandbox-jwt"] = hashlib.sha256(req.bearer.encode()).hexdigest()[:12]
        body = req.payload if isinstance(req.payload, dict) else {}
        self.recorder.add(Received(target=req.token, payload=body, headers=recorded, answered=reason or "ok"))
        if reason == STALL:
            return None
        state = self._token_state(conn)
        if reason in _KILLS_TOKEN and state.token == req.bearer.partition(" ")[2]:
            state.dead = True  # the client may now replace it without waiting 20 minutes
        return (200 if reason is None else REASON_STATUS.get(reason, 400)), reason, req.apns_id

    def _check(self, conn: _Connection, req: _Request) -> str | None:
        """The reason Apple would reject this request with, or None."""
        h = req.headers
        push_type = h.get("apns-push-type", "alert")
        checks = [
            (h.get(":method") != "POST", "MethodNotAllowed"),
            (not h.get(":path", "").startswith("/3/device/"), "BadPath"),
            (req.duplicate, "DuplicateHeaders"),
            (not req.token, "MissingDeviceToken"),
            (not _is_uuid(h.get("apns-id")), "BadMessageId"),
            (not req.bearer, "MissingProviderToken"),
        ]
        rejected = next((reason for failed, reason in checks if failed), None)
        rejected = rejected or self._authorize(conn, req.bearer)
        checks = [
            ("apns-topic" not in h, "MissingTopic"),
            (h.get("apns-priority", "10") not in {"1", "5", "10"}, "BadPriority"),
            (push_type not in _PUSH_TYPES.split(), "InvalidPushType"),
            (not h.get("apns-expiration", "0").isdigit(), "BadExpirationDate"),
            (len(h.get("apns-collapse-id", "").encode()) > 64, "BadCollapseId"),
            (req.size == 0, "PayloadEmpty"),
            (req.size > (5120 if push_type == "voip" else 4096), "PayloadTooLarge"),
            # Apple's table names no reason for a body that is not a JSON object; 400 is what it answers.
            (not isinstance(req.payload, dict), "BadPayload"),
            (not _is_hex(req.token), "BadDeviceToken"),
        ]
        return rejected or next((reason for failed, reason in checks if failed), None)

    def _authorize(self, conn: _Connection, bearer: str) -> str | None:
        scheme, _, token = bearer.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "InvalidProviderToken"
        verified = self._verified.get(token)
        if verified is None:
            # ES256 verification dominates the sandbox's CPU: verify each distinct token once.
            verified = self._verify(token)
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[token] = verified
        rejection, iat = verified
        now = self._clock()
        if rejection is not None or iat > now + 60:
            return rejection or "InvalidProviderToken"
        if now - iat > _TOKEN_MAX_AGE_S:
            return "ExpiredProviderToken"
        state = self._token_state(conn)
        if state.token != token:
            if state.token is not None and not state.dead and iat - state.iat < _TOKEN_MIN_REFRESH_S:
                return "TooManyProviderTokenUpdates"
            state.token, state.iat, state.dead = token, iat, False
        return None

    def _verify(self, token: str) -> tuple[str | None, float]:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                cast(Any, self._public_key),
                algorithms=["ES256"],
                options={"verify_iat": False, "require": ["iss", "iat"]},
            )
        except jwt.PyJWTError:
            return "InvalidProviderToken", 0.0
        iat = claims.get("iat")
        if header.get("kid") != self._key_id or claims.get("iss") != self._team_id:
            return "InvalidProviderToken", 0.0
        if not isinstance(iat, int | float):
            return "InvalidProviderToken", 0.0
        return None, float(iat)

    def _token_state(self, conn: _Connection) -> _TokenState:
        return conn.token if self._scope == "connection" else self._team_token

    def now_ms(self) -> int:
        return int(self._clock() * 1000)


class _Connection(asyncio.Protocol):
    def __init__(self, sandbox: ApnsSandbox) -> None:
        sandbox.connections_opened += 1
        self.number = sandbox.connections_opened
        self.token = _TokenState()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sandbox = sandbox
        self._h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        # Enforce the advertised limit from the first frame: h2's own default (100) would otherwise
        # apply until the client acknowledges our SETTINGS, and a burst of new streams would be refused.
        self._h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: sandbox.max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: 64 * 1024,
            },
        )
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._unsent: dict[int, bytes] = {}  # error bodies waiting for send window
        self._going_away = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._sandbox._live.add(self)
        self._h2.initiate_connection()
        # A connection window far above 64 KiB, so a thousand concurrent uploads never wait for us.
        self._h2.increment_flow_control_window(_CONNECTION_WINDOW - 65_535)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._sandbox._live.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except ProtocolError:
            self._flush()
            self.abort()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._streams[event.stream_id] = _Stream(
                    [(_text(k), _text(v)) for k, v in event.headers or ()]
                )
            elif isinstance(event, DataReceived):
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.size += len(event.data)
                    if stream.size <= 8192:  # keep enough to parse; the size alone decides 413
                        stream.body += event.data
            elif isinstance(event, StreamEnded):
                stream = self._streams.pop(event.stream_id, None)
                if stream is not None and not self._going_away:
                    self._respond(event.stream_id, stream)
            elif isinstance(event, StreamReset):
                self._streams.pop(event.stream_id, None)
                self._unsent.pop(event.stream_id, None)
            elif isinstance(event, WindowUpdated | RemoteSettingsChanged):
                self._send_unsent()
            elif isinstance(event, ConnectionTerminated):
                self._going_away = True
        self._flush()
        if self._going_away and self._transport is not None:
            self._transport.close()

    def _respond(self, stream_id: int, stream: _Stream) -> None:
        answer = self._sandbox.answer(self, stream)
        if answer is None:
            return
        status, reason, apns_id = answer
        headers = [(":status", str(status)), ("apns-id", apns_id)]
        try:
            if reason is None:
                self._h2.send_headers(stream_id, headers, end_stream=True)
                return
            self._h2.send_headers(stream_id, [*headers, ("content-type", "application/json")])
        except ProtocolError:  # the client reset the stream in the same read
            return
        body: dict[str, Any] = {"reason": reason}
        if status == 410:
            body["timestamp"] = self._sandbox.now_ms()
        self._unsent[stream_id] = json.dumps(body).encode()
        self._send_unsent()
        if reason in _CLOSES_CONNECTION:
            self.goaway(reason, flush=False)

    def _send_unsent(self) -> None:
        for stream_id, body in list(self._unsent.items()):
            try:
                # One DATA frame or nothing: aioapns parses each DATA frame as a whole JSON document.
                if self._h2.local_flow_control_window(stream_id) < len(body):
                    continue
                self._h2.send_data(stream_id, body, end_stream=True)
            except ProtocolError:  # stream gone; nothing left to answer
                pass
            del self._unsent[stream_id]

    def goaway(self, reason: str, *, flush: bool = True) -> None:
        if not self._going_away:
            self._going_away = True
            with contextlib.suppress(ProtocolError):  # the peer may have closed first
                self._h2.close_connection(additional_data=json.dumps({"reason": reason}).encode())
        if flush:
            self._flush()
            if self._transport is not None:
                self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


class SandboxThread(ServingThread[ApnsSandbox]):
    """Handle on a sandbox serving from its own thread; ``faults`` and ``recorder`` are thread-safe."""

    @property
    def port(self) -> int:
        return self.sandbox.port

    @property
    def ca_path(self) -> Path:
        return self.sandbox.ca_path


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_hex(token: str) -> bool:
    return len(token) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in token)


def _is_uuid(value: str | None) -> bool:
    if value is None:
        return True
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False

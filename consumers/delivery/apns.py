"""APNs channel adapter: one decoded channel message in, one ``Outcome`` out, over aioapns 4.0.

Contract: ``await ApnsAdapter(...).send(message)`` never raises for provider or transport trouble; it
returns ``classify(...)`` of Apple's answer, or a retryable ``timeout`` / ``connection_error``.
Every send is bounded by ``timeout_s``. The ``apns-id`` is ``apns_id_for(delivery_id)`` (uuid5), so
a retried delivery carries the same id. The adapter binds to the event loop of its first send;
``await close()`` when done. ``classify`` is pure and implements Apple's status/reason table.

What we change in aioapns, and why (all read in its 4.0 source):

- It has no host/port setting: a ``protocol_class`` subclass carries ``APNS_SERVER``/``APNS_PORT``.
- It mints one JWT per connection (30 min TTL), so bursts that open connections send several
  tokens and risk ``TooManyProviderTokenUpdates``: one ``ProviderToken`` serves every connection and
  is minted every 50 minutes (Apple: no more than every 20, no less than every 60).
- It closes connections idle for 10 s, and Apple treats rapid reconnects as abuse: raised.
- It never returns HTTP/2 receive window, so a connection stalls after ~64 KiB of error bodies; it
  matches answers by the echoed ``apns-id``, hangs on an error without a reason body or a
  RST_STREAM, crashes the connection when a timed-out request is answered late, and keeps every
  successful stream in a dict forever. Our protocol acknowledges data and settles each request
  when its stream ends.
- A closing connection stays in the pool until the transport is gone and still takes sends: it
  leaves the pool as soon as it starts closing.
- When every connection is busy, senders convoy on the pool lock (seconds of p99): ``max_in_flight``
  queues them on a fair semaphore first.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import jwt
from aioapns.common import NotificationRequest, NotificationResult, PushType
from aioapns.connection import (
    APNsBaseClientProtocol,
    APNsKeyConnectionPool,
    APNsProductionClientProtocol,
    AuthorizationHeaderProvider,
)
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import ProtocolError

from consumers.delivery.outcome import Outcome
from notify_core.settings import Settings
from notify_core.tracing import http_response, provider_call

# Apple's limit for an alert (VoIP may take 5120; we send alerts only). Apple answers 413
# PayloadTooLarge; we refuse before sending, with the same reason, so no retry is spent on it.
MAX_PAYLOAD_BYTES = 4096
_APNS_ID_NAMESPACE = uuid.UUID("6f1c2b1e-8a57-4c43-9d3e-5b0f4a7e2c11")
_DEACTIVATE = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered", "ExpiredToken"})
_RETRY_REASONS = frozenset({"ExpiredProviderToken", "IdleTimeout"})
_TRANSPORT_ERRORS = (
    TimeoutError,
    MaxAttemptsExceeded,
    ConnectionClosed,
    ApnsConnectionError,
    OSError,
    ProtocolError,
)


def apns_id_for(delivery_id: str) -> str:
    return str(uuid.uuid5(_APNS_ID_NAMESPACE, delivery_id))


def classify(
    status: str | int, reason: str | None, timestamp: int | None, *, apns_id: str | None = None
) -> Outcome:
    """Apple's answer as an ``Outcome`` (``apns_id`` becomes the provider message id of a 200)."""
    try:
        code = int(status)
    except (TypeError, ValueError):
        return Outcome.retry("bad_response", detail=f"APNs status {status!r}")
    if code == 200:
        return Outcome.sent(apns_id)
    name = reason or str(code)
    detail = f"APNs {code} {name}" + (f", token inactive since {timestamp} ms" if timestamp else "")
    if name in _DEACTIVATE or code == 410:
        return Outcome.permanent(name, deactivate_target=True, detail=detail)
    if name in _RETRY_REASONS or code == 429 or code >= 500:
        return Outcome.retry(name, detail=detail)
    if 400 <= code < 500:  # other 400s, 403 configuration errors, 404, 405, 413: retrying cannot help
        return Outcome.permanent(name, detail=detail)
    return Outcome.retry(name, detail=detail)


def classify_exception(exc: BaseException) -> Outcome:
    """A send that got no answer: retry, whether it timed out or the connection failed."""
    if isinstance(exc, TimeoutError):
        return Outcome.retry("timeout")
    return Outcome.retry("connection_error", detail=type(exc).__name__)


def build_payload(message: Mapping[str, Any]) -> dict[str, Any]:
    """Custom ``data`` keys at the top level, beside ``aps`` (which they cannot replace)."""
    data: Mapping[str, str] = message.get("data") or {}
    return {**data, "aps": {"alert": {"title": message["title"], "body": message["body"]}}}


def payload_size(message: Mapping[str, Any]) -> int:
    """Bytes of the JSON body sent for ``message``: aioapns dumps it with ``ensure_ascii=False``."""
    return len(json.dumps(build_payload(message), ensure_ascii=False).encode("utf-8", "surrogatepass"))


class ProviderToken(AuthorizationHeaderProvider):
    """The one provider JWT all connections send, minted again after ``lifetime_s``."""

    def __init__(
        self,
        key_pem: str,
        key_id: str,
        team_id: str,
        *,
        lifetime_s: float = 50 * 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = load_pem_private_key(key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("an APNs key is an ES256 (P-256) private key")
        self._key, self._key_id, self._team_id = key, key_id, team_id
        self._lifetime_s, self._clock = lifetime_s, clock
        self._header: str | None = None
        self._issued_at = 0.0

    def get_header(self) -> str:
        now = self._clock()
        if self._header is None or now - self._issued_at >= self._lifetime_s:
            claims = {"iss": self._team_id, "iat": int(now)}
            token = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self._key_id})
            self._header, self._issued_at = f"bearer {token}", now
        return self._header

    def expire(self, header: str) -> None:
        """APNs called ``header`` expired: mint anew on next use, once however many sends saw it."""
        if header == self._header:
            self._header = None


class _Protocol(APNsProductionClientProtocol):
    INACTIVITY_TIME = 600  # long enough that bursty traffic reuses the connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self._statuses: dict[int, str] = {}
        self._bodies: dict[int, bytes] = {}

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.flush()
            self.close()
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                status = dict(event.headers or ()).get(b":status", b"")
                self._statuses[event.stream_id] = status.decode() if isinstance(status, bytes) else status
            elif isinstance(event, DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self._bodies[event.stream_id] = self._bodies.get(event.stream_id, b"") + event.data
            elif isinstance(event, StreamEnded | StreamReset):
                self._settle(event.stream_id, reset=isinstance(event, StreamReset))
            elif isinstance(event, RemoteSettingsChanged):
                self.on_remote_settings_changed(cast(Any, event.changed_settings))
            elif isinstance(event, ConnectionTerminated):
                self.close()
        self.flush()

    def _settle(self, stream_id: int, *, reset: bool) -> None:
        status = self._statuses.pop(stream_id, "")
        body = self._bodies.pop(stream_id, b"")
        notification_id = self.request_streams.pop(stream_id, None)
        if notification_id is None:
            return
        self.free_channels.release()
        self.request_statuses.pop(notification_id, None)
        future = self.requests.pop(notification_id, None)
        if future is None or future.done():  # timed out and cancelled: nobody waits any more
            return
        if reset and not status:
            future.set_exception(ConnectionClosed(f"stream {stream_id} reset"))
            return
        reason, timestamp = _error_body(body)
        future.set_result(
            NotificationResult(notification_id, status, description=reason, timestamp=timestamp)
        )

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            super().flush()

    def close(self) -> None:
        if self.on_connection_lost is not None:
            cast(Callable[[APNsBaseClientProtocol], None], self.on_connection_lost)(self)
        super().close()

    def connection_lost(self, exc: Exception | None) -> None:
        # aioapns fails every waiting future, and would raise on those already cancelled by a timeout.
        self.requests = {k: f for k, f in self.requests.items() if not f.done()}
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


class _Pool(APNsKeyConnectionPool):
    def __init__(self, *, token: ProviderToken, protocol_class: type[_Protocol], **kwargs: Any) -> None:
        super().__init__(key="", key_id="", team_id="", **kwargs)
        self.protocol_class = protocol_class
        self._token = token
        self._opened: set[_Protocol] = set()
        self._closed = False

    async def create_connection(self) -> APNsBaseClientProtocol:
        if self._closed:
            raise ConnectionClosed("adapter closed")
        protocol_class, topic = self.protocol_class, cast(str, self.apns_topic)
        discard = cast(Any, self.discard_connection)
        _, protocol = await self.loop.create_connection(
            lambda: protocol_class(topic, self.loop, discard, self._token),
            host=protocol_class.APNS_SERVER,
            port=protocol_class.APNS_PORT,
            ssl=self.ssl_context,
        )
        opened = cast(_Protocol, protocol)
        self._opened.add(opened)
        opened.lost.add_done_callback(lambda _: self._opened.discard(opened))
        return opened

    def discard_connection(self, connection: APNsBaseClientProtocol) -> None:
        if connection in self.connections:  # idempotent: a closing connection leaves before it is lost
            self.connections.remove(connection)

    async def aclose(self, grace_s: float = 2.0) -> None:
        self._closed = True
        opened = list(self._opened)
        for protocol in opened:
            protocol.close()
        if opened:
            _, stuck = await asyncio.wait([p.lost for p in opened], timeout=grace_s)
            for protocol in opened:
                if protocol.lost in stuck and protocol.transport is not None:
                    protocol.transport.abort()
            if stuck:
                await asyncio.wait(stuck, timeout=grace_s)


# The provider call's span: the path's shape, never the device token in it.
_CALL_ATTRIBUTES = {"http.request.method": "POST", "url.template": "/3/device/{device_token}"}


class ApnsAdapter:
    """Sends alerts to one APNs endpoint (``https://host[:port]``) with one token-signing key."""

    def __init__(
        self,
        *,
        endpoint: str,
        key_pem: str,
        key_id: str,
        team_id: str,
        topic: str,
        ca_file: str | Path | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 4,
        max_connection_attempts: int = 3,
        max_in_flight: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"APNs endpoint must be https://host[:port], got {endpoint!r}")
        host, port = parts.hostname, parts.port or 443
        self._protocol_class = cast(
            type[_Protocol], type("ApnsEndpoint", (_Protocol,), {"APNS_SERVER": host, "APNS_PORT": port})
        )
        self._token = ProviderToken(key_pem, key_id, team_id, clock=clock)
        self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
        self._ssl.set_alpn_protocols(["h2"])  # RFC 9113 wants it; Apple does not require it
        self._topic, self._timeout_s = topic, timeout_s
        self._max_connections, self._max_attempts = max_connections, max_connection_attempts
        self._pool: _Pool | None = None  # made on first send: aioapns binds to the loop it is built in
        # Once every connection is busy, aioapns queues senders on one lock that hands over once per
        # loop iteration: measured p99 of 8 s at 2000 in flight. Queue them fairly here instead.
        self._in_flight = asyncio.Semaphore(max_in_flight)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ApnsAdapter:
        """``kwargs``: timeout_s, max_connections, max_in_flight (not settings yet); ``ca_file`` overrides."""
        if settings.apns_key is None:
            raise ValueError("NOTIFY_APNS_KEY (the .p8 key content) is not set")
        kwargs.setdefault("ca_file", settings.apns_ca_file)
        return cls(
            endpoint=settings.apns_endpoint,
            key_pem=settings.apns_key.get_secret_value(),
            key_id=settings.apns_key_id,
            team_id=settings.apns_team_id,
            topic=settings.apns_topic,
            **kwargs,
        )

    async def send(self, message: Mapping[str, Any]) -> Outcome:
        """Deliver one channel message (delivery_id, target, title, body, data, priority, expires_at)."""
        ttl: int | None = None
        if message.get("expires_at") is not None:
            # aioapns adds the TTL to its own int(time.time()): this keeps apns-expiration = expires_at.
            ttl = int(message["expires_at"].timestamp()) - int(time.time())
            if ttl <= 0:
                return Outcome.permanent("expired", detail="expires_at passed before the send")
        size = payload_size(message)
        if size > MAX_PAYLOAD_BYTES:
            detail = f"payload of {size} bytes is over APNs' {MAX_PAYLOAD_BYTES}; not sent"
            return Outcome.permanent("PayloadTooLarge", detail=detail)
        request = NotificationRequest(
            device_token=str(message["target"]),
            message=build_payload(message),
            notification_id=apns_id_for(str(message["delivery_id"])),
            time_to_live=ttl,
            priority=5 if message.get("priority") == "LOW" else 10,
            collapse_key=message.get("collapse_id"),
            push_type=PushType.ALERT,
        )
        header = self._token.get_header()
        try:
            with provider_call(
                "POST apns",
                server_address=self._protocol_class.APNS_SERVER,
                server_port=self._protocol_class.APNS_PORT,
                attributes=_CALL_ATTRIBUTES,
            ) as call:
                result = await asyncio.wait_for(self._send(request), self._timeout_s)
                http_response(call, result.status)
        except _TRANSPORT_ERRORS as exc:
            return classify_exception(exc)
        outcome = classify(
            result.status, result.description, result.timestamp, apns_id=request.notification_id
        )
        if outcome.reason == "ExpiredProviderToken":
            self._token.expire(header)
        return outcome

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

    async def _send(self, request: NotificationRequest) -> NotificationResult:
        async with self._in_flight:
            return await self._connections().send_notification(request)

    def _connections(self) -> _Pool:
        if self._pool is None:
            self._pool = _Pool(
                token=self._token,
                protocol_class=self._protocol_class,
                topic=self._topic,
                max_connections=self._max_connections,
                max_connection_attempts=self._max_attempts,
                ssl_context=self._ssl,
            )
        return self._pool


def _error_body(body: bytes) -> tuple[str | None, int | None]:
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    reason, timestamp = data.get("reason"), data.get("timestamp")
    return (reason or None) if isinstance(reason, str) else None, timestamp if isinstance(
        timestamp, int
    ) else None

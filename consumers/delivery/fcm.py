"""FCM HTTP v1 channel adapter: one decoded channel message in, one ``Outcome`` out, over aiohttp.

Contract: ``await FcmAdapter(...).send(message)`` never raises for provider, transport or OAuth
trouble; it returns ``classify(...)`` of Google's answer, or ``classify_exception(...)``: a retryable
``timeout`` / ``connection_error`` / ``oauth_unreachable`` / ``oauth_error``, or a permanent
``oauth_<error>`` when the token endpoint refuses the service account (``oauth_invalid_grant``, ...).
Every send (token included) is bounded by ``timeout_s``.
A message whose ``expires_at`` has passed is ``permanent("expired")`` without a call. The adapter
binds to the event loop of its first send; ``await close()`` when done. ``classify`` is pure and
implements FCM's errorCode table (notes: providers.md §3).

Why not pyfcm or firebase-admin (providers.md §4): pyfcm is sync and recurses forever on
Retry-After; firebase-admin needs a private monkeypatch to change its endpoint and drags in gRPC.
This client is one shared aiohttp session with a bounded keep-alive pool and one shared OAuth token.

OAuth: google-auth's service-account credentials sign the grant JWT and POST it to the key file's
``token_uri`` (the sandbox in tests). That call is blocking, so it runs in a thread; one refresh at a
time serves every waiting send, and the token is renewed ``refresh_margin_s`` before it expires. A
401 without an FcmError (the access token expired or was revoked) drops that token and the send is
tried once more with a fresh one; a second 401 is a retryable ``UNAUTHENTICATED``.

A refused service account (RFC 6749 token errors: ``invalid_grant`` for a wrong or deleted key,
``invalid_client``, ``unauthorized_client``, ``invalid_scope``, ...) is permanent, like the other
channels' bad credentials (APNs 403 InvalidProviderToken, SMTP 535, SNS InvalidClientTokenId): no
retry can fix it, so the delivery is dead-lettered with a reason that names the refusal, to be
replayed (``notify dlq replay android --reason oauth_invalid_grant``) once the key is fixed. A
refresh that google-auth marks retryable (5xx, 429, ``temporarily_unavailable``) stays a retry.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import email.utils
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import google.auth.transport.requests
from google.auth import exceptions as google_exceptions
from google.oauth2 import service_account

from consumers.delivery.outcome import Outcome
from notify_core.settings import Settings
from notify_core.tracing import http_call, http_response

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
MAX_TTL_S = 2_419_200  # FCM's limit (28 days); a longer ttl is INVALID_ARGUMENT
# FCM's limit on a token message's notification + data; over it FCM answers 400 INVALID_ARGUMENT
# "Message is too big". We refuse before sending, with that same reason, so no retry is spent on it.
MAX_PAYLOAD_BYTES = 4096
_SIZE_CLOCK = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # any time: the ttl it shapes is not counted

_DEACTIVATE = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
_RETRY = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})
# Configuration errors: retrying cannot help until someone fixes the APNs/web-push credentials.
_PERMANENT = frozenset({"INVALID_ARGUMENT", "THIRD_PARTY_AUTH_ERROR", "APNS_AUTH_ERROR"})
# Google: back off QUOTA_EXCEEDED with "a minimum initial delay of 1 minute" when no Retry-After.
_QUOTA_MIN_DELAY_S = 60.0
_UNAUTHENTICATED = "UNAUTHENTICATED"
# RFC 6749 5.2 token-endpoint errors, and access_denied: the endpoint refuses our service account
# (or our grant of it), and asking again with the same key gets the same answer.
_CREDENTIAL_REFUSALS = frozenset(
    {
        "invalid_grant",  # wrong, deleted or disabled key; the JWT's iat/exp off (clock skew)
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "invalid_request",
        "unsupported_grant_type",
        "access_denied",
    }
)
_OAUTH_CODE = re.compile(r"^([a-z_]{1,40}):")
# "Invalid value at 'message.data[0].value' (TYPE_STRING), <the value>": keep the part before the value.
_QUOTED_VALUE = re.compile(r"^(Invalid value at '[^']*'(?: \([^)]*\))?)")
_TRANSPORT_ERRORS = (
    TimeoutError,
    aiohttp.ClientError,
    OSError,
    google_exceptions.TransportError,
    google_exceptions.RefreshError,
)


# --- pure functions ---------------------------------------------------------------------------------
def classify(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
) -> Outcome:
    """Google's answer as an ``Outcome``. ``now`` (epoch s) only matters for an HTTP-date Retry-After."""
    data = _json(body)
    if status == 200:
        name = data.get("name") if data is not None else None
        return Outcome.sent(name if isinstance(name, str) else None)
    error = data.get("error") if data is not None else None
    error = error if isinstance(error, dict) else {}
    fcm_code, bad_fields = _details(error.get("details"))
    rpc_status = error.get("status") if isinstance(error.get("status"), str) else None
    text = _safe_text(error.get("message"))
    reason = fcm_code or rpc_status or str(status)
    detail = f"FCM {status} {reason}" + (f": {text}" if text else "")
    retry_after = _retry_after(headers, now)

    if fcm_code in _DEACTIVATE:
        return Outcome.permanent(fcm_code, deactivate_target=True, detail=detail)
    if fcm_code == "INVALID_ARGUMENT" or (fcm_code is None and status == 400):
        # FCM reports a malformed or foreign token as INVALID_ARGUMENT: that token will never work.
        bad_token = "message.token" in bad_fields or "registration token" in (text or "").lower()
        return Outcome.permanent(reason, deactivate_target=bad_token, detail=detail)
    if fcm_code in _PERMANENT:
        return Outcome.permanent(reason, detail=detail)
    if fcm_code == "QUOTA_EXCEEDED" or status == 429:
        return Outcome.retry(reason, retry_after_s=retry_after or _QUOTA_MIN_DELAY_S, detail=detail)
    if status == 401:
        # No FcmError: our access token is expired or revoked; the adapter refreshes it.
        return Outcome.retry(_UNAUTHENTICATED, detail=detail)
    if fcm_code in _RETRY or status >= 500:
        return Outcome.retry(reason, retry_after_s=retry_after, detail=detail)
    if 400 <= status < 500:  # 403 PERMISSION_DENIED, 404 NOT_FOUND without UNREGISTERED, ...
        return Outcome.permanent(reason, detail=detail)
    return Outcome.retry(reason, retry_after_s=retry_after, detail=detail)  # 1xx/3xx: not FCM talking


def classify_exception(exc: BaseException) -> Outcome:
    """A send that got no answer from FCM: retryable (timeout, lost connection, token endpoint down or
    busy), except a token endpoint that refused our credentials, which is permanent."""
    if isinstance(exc, TimeoutError):
        return Outcome.retry("timeout")
    if isinstance(exc, google_exceptions.RefreshError):
        code = _oauth_error_code(exc)
        if code in _CREDENTIAL_REFUSALS and not getattr(exc, "retryable", False):
            # Our key is refused: the same policy as the other channels' bad credentials.
            return Outcome.permanent(f"oauth_{code}", detail=_refresh_error_text(exc))
        return Outcome.retry("oauth_error", detail=_refresh_error_text(exc))
    if isinstance(exc, google_exceptions.TransportError):
        return Outcome.retry("oauth_unreachable", detail=type(exc.__cause__ or exc).__name__)
    return Outcome.retry("connection_error", detail=type(exc).__name__)


def ttl_seconds(expires_at: dt.datetime | None, now: dt.datetime) -> int | None:
    """Whole seconds left before ``expires_at`` (None = no expiry), capped at FCM's 28 days."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:  # the codec gives aware UTC; a naive value is UTC too
        expires_at = expires_at.replace(tzinfo=dt.UTC)
    return min(math.floor((expires_at - now).total_seconds()), MAX_TTL_S)


def build_body(message: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The ``messages:send`` body for one channel message (an expired one gets ``ttl`` "0s")."""
    fcm: dict[str, Any] = {"token": str(message["target"])}
    notification = {k: message[k] for k in ("title", "body") if message.get(k) is not None}
    if notification:
        fcm["notification"] = notification
    data: Mapping[str, Any] = message.get("data") or {}
    if data:
        # FCM rejects non-string values; the schema promises strings, this keeps a stray one sendable.
        fcm["data"] = {str(k): v if isinstance(v, str) else str(v) for k, v in data.items()}
    # Notification messages are high priority by default on FCM; like APNs, only LOW may wait for Doze.
    android: dict[str, Any] = {"priority": "normal" if message.get("priority") == "LOW" else "high"}
    ttl = ttl_seconds(message.get("expires_at"), now)
    if ttl is not None:
        android["ttl"] = f"{max(ttl, 0)}s"
    if message.get("collapse_id"):
        android["collapse_key"] = str(message["collapse_id"])
    fcm["android"] = android
    return {"message": fcm}


def payload_size(message: Mapping[str, Any]) -> int:
    """Bytes of ``message``'s body that count against ``MAX_PAYLOAD_BYTES``."""
    return _content_size(build_body(message, _SIZE_CLOCK))


def _content_size(body: Mapping[str, Any]) -> int:
    # Notification and data as compact UTF-8 JSON: what FCM counts (the token and android options
    # are not payload).
    fcm = body["message"]
    content = {"notification": fcm.get("notification", {}), "data": fcm.get("data", {})}
    text = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8", "surrogatepass"))


# --- OAuth ------------------------------------------------------------------------------------------
class _BoundedRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport with our timeout: its token grant passes none (120 s default)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        timeout = timeout or self._timeout_s
        return super().__call__(url, method, body, headers, timeout=timeout, **kwargs)  # type: ignore[no-untyped-call]


class AccessToken:
    """One OAuth access token shared by every send, refreshed single-flight before it expires."""

    def __init__(
        self,
        credentials: service_account.Credentials,
        *,
        refresh_margin_s: float = 300.0,
        timeout_s: float = 10.0,
        failure_cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self._request = _BoundedRequest(timeout_s)
        self._margin_s, self._clock = refresh_margin_s, clock
        self._token: str | None = None
        self._expires_at = 0.0  # clock seconds
        self._refreshing: asyncio.Task[str] | None = None
        self._cooldown_s = failure_cooldown_s
        self._failed: tuple[float, Exception] | None = None  # (clock, error) of the last failed refresh
        self.refreshes = 0  # successful token grants, for metrics and tests

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> AccessToken:
        """``kwargs`` as for ``__init__``. The file's ``token_uri`` is where tokens come from."""
        credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(path), scopes=[FCM_SCOPE]
        )
        return cls(credentials, **kwargs)

    async def get(self) -> str:
        """A token valid for at least ``refresh_margin_s`` more; raises google-auth's errors."""
        if self._token is not None and self._clock() < self._expires_at - self._margin_s:
            return self._token
        if self._failed is not None and self._clock() < self._failed[0] + self._cooldown_s:
            # A refused key stays refused: do not send every message's worth of grants to the endpoint.
            # A copy (args and google-auth's retryable flag, no traceback) for each waiting send.
            raise copy.copy(self._failed[1])
        task = self._refreshing
        if task is None:
            task = self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
            task.add_done_callback(_consume_exception)
        # Shielded: a send that times out must not cancel the refresh the others are waiting for.
        return await asyncio.shield(task)

    def invalidate(self, token: str) -> None:
        """FCM refused ``token``: refresh on next use, once however many sends saw it refused."""
        if token == self._token:
            self._token = None

    async def close(self) -> None:
        task, self._refreshing = self._refreshing, None
        if task is not None and not task.done():
            task.cancel()  # the thread finishes its (bounded) request on its own
        self._request.session.close()

    async def _refresh(self) -> str:
        try:
            started = self._clock()
            await asyncio.to_thread(self._credentials.refresh, self._request)
            token = self._credentials.token
            if not isinstance(token, str) or not token:
                raise google_exceptions.RefreshError("token endpoint returned no access_token")  # type: ignore[no-untyped-call]
            expiry = self._credentials.expiry  # naive UTC, from the grant's expires_in
            lifetime = (
                (expiry.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)).total_seconds()
                if isinstance(expiry, dt.datetime)
                else 3600.0
            )
            self._token, self._expires_at = token, started + lifetime
            self._failed = None
            self.refreshes += 1
            return token
        except (google_exceptions.RefreshError, google_exceptions.TransportError) as exc:
            self._failed = (self._clock(), exc)
            raise
        finally:
            self._refreshing = None


# --- the adapter ------------------------------------------------------------------------------------
class FcmAdapter:
    """Sends to one FCM project at ``endpoint`` (``https://fcm.googleapis.com`` or a sandbox)."""

    def __init__(
        self,
        *,
        endpoint: str,
        project_id: str,
        token: AccessToken,
        timeout_s: float = 10.0,
        max_connections: int = 32,
        keepalive_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"FCM endpoint must be http(s)://host[:port], got {endpoint!r}")
        self.url = f"{endpoint.rstrip('/')}/v1/projects/{quote(project_id, safe='')}/messages:send"
        self.token = token
        self._timeout_s, self._clock = timeout_s, clock
        self._max_connections, self._keepalive_s = max_connections, keepalive_s
        self._session: aiohttp.ClientSession | None = None  # made on first send, in the running loop

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> FcmAdapter:
        """``kwargs``: max_connections, keepalive_s, clock, refresh_margin_s, failure_cooldown_s."""
        if settings.fcm_credentials_file is None:
            raise ValueError("NOTIFY_FCM_CREDENTIALS_FILE (a service-account JSON) is not set")
        token_keys = ("refresh_margin_s", "failure_cooldown_s", "clock")
        token_kwargs = {k: kwargs.pop(k) for k in token_keys if k in kwargs}
        token = AccessToken.from_file(
            settings.fcm_credentials_file, timeout_s=settings.fcm_timeout_s, **token_kwargs
        )
        if "clock" in token_kwargs:
            kwargs["clock"] = token_kwargs["clock"]
        return cls(
            endpoint=settings.fcm_endpoint,
            project_id=settings.fcm_project_id,
            token=token,
            timeout_s=settings.fcm_timeout_s,
            **kwargs,
        )

    async def send(self, message: Mapping[str, Any]) -> Outcome:
        """Deliver one channel message (delivery_id, target, title, body, data, priority, expires_at)."""
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        ttl = ttl_seconds(message.get("expires_at"), now)
        if ttl is not None and ttl <= 0:
            return Outcome.permanent("expired", detail="expires_at passed before the send")
        body = build_body(message, now)
        size = _content_size(body)
        if size > MAX_PAYLOAD_BYTES:
            detail = f"notification and data of {size} bytes are over FCM's {MAX_PAYLOAD_BYTES}; not sent"
            return Outcome.permanent("INVALID_ARGUMENT", detail=detail)
        payload = json.dumps(body, separators=(",", ":")).encode()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._send(payload)
        except _TRANSPORT_ERRORS as exc:
            return classify_exception(exc)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        await self.token.close()

    async def _send(self, payload: bytes) -> Outcome:
        session = self._connections()
        outcome = Outcome.retry(_UNAUTHENTICATED)
        for _ in range(2):  # a second try only after a 401 made us drop the token
            token = await self.token.get()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            with http_call("POST fcm", self.url, "/v1/projects/{project}/messages:send") as call:
                async with session.post(self.url, data=payload, headers=headers) as response:
                    body = await response.read()
                    outcome = classify(response.status, body, response.headers)
                http_response(call, response.status)
            if response.status != 401 or outcome.reason != _UNAUTHENTICATED:
                return outcome
            self.token.invalidate(token)
        return outcome

    def _connections(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections,
                keepalive_timeout=self._keepalive_s,
            )
            # The per-request timeout backs up the outer one, which also covers the token.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
        return self._session


# --- helpers ----------------------------------------------------------------------------------------
def _json(body: bytes | str | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if body is None or isinstance(body, Mapping):
        return body
    try:
        data = json.loads(body) if body else None
    except ValueError:  # an HTML error page from a proxy, a truncated body: classify by status
        return None
    return data if isinstance(data, dict) else None


def _safe_text(message: Any) -> str | None:
    """Google's error message, minus the offending value it quotes (it may be a data value: personal)."""
    if not isinstance(message, str):
        return None
    quoted = _QUOTED_VALUE.match(message)
    return (quoted.group(1) if quoted else message)[:300]


def _details(details: Any) -> tuple[str | None, frozenset[str]]:
    """(FcmError errorCode, fields named by google.rpc.BadRequest violations) from ``details``."""
    code: str | None = None
    fields: set[str] = set()
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == FCM_ERROR_TYPE and isinstance(detail.get("errorCode"), str):
            code = code or detail["errorCode"]
        elif detail.get("@type") == BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or ():
                if isinstance(violation, dict) and isinstance(violation.get("field"), str):
                    fields.add(violation["field"])
    return code, frozenset(fields)


def _retry_after(headers: Mapping[str, str] | None, now: float | None) -> float | None:
    """Retry-After in seconds (RFC 9110: delay-seconds or an HTTP-date), None when absent or bad."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _oauth_error_code(exc: google_exceptions.RefreshError) -> str | None:
    """The OAuth ``error`` of a refused grant: from the response google-auth keeps as its second
    argument, else from its "<error>: <error_description>" text."""
    response = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(response, Mapping) and isinstance(response.get("error"), str):
        return str(response["error"])
    match = _OAUTH_CODE.match(str(exc.args[0])) if exc.args else None
    return match.group(1) if match else None


def _refresh_error_text(exc: google_exceptions.RefreshError) -> str:
    """google-auth's first argument is "<error>: <error_description>"; the rest is the raw response."""
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _consume_exception(task: asyncio.Task[str]) -> None:
    # Waiters may all have timed out; mark a failed refresh's exception retrieved so asyncio stays quiet.
    if not task.cancelled():
        task.exception()

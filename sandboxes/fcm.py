"""FCM HTTP v1 sandbox: the OAuth token endpoint and ``messages:send`` on loopback, answering like Google.

Contract (what a client sees), plain HTTP/1.1 on ``127.0.0.1``:

- ``POST /token`` with the form ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``
  (what google-auth's service-account credentials send to the key file's ``token_uri``): the RS256
  JWT must be signed by a trusted service-account key (``trust``/``create_service_account``), name
  it as ``iss``, carry ``aud`` = Google's token URL or this one, a firebase.messaging ``scope``, and
  ``iat``/``exp`` at most an hour apart around now. Answers ``200 {"access_token", "expires_in",
  "token_type": "Bearer"}``, or 400 ``{"error": "invalid_grant" | "invalid_scope" |
  "unsupported_grant_type", "error_description": ...}`` in Google's words.
- ``POST /v1/projects/{project}/messages:send`` with ``Authorization: Bearer <issued token>``:
  an unknown or expired token → 401 UNAUTHENTICATED (no FcmError detail), another project →
  403 PERMISSION_DENIED, a malformed message → 400 INVALID_ARGUMENT (FcmError detail, or
  ``google.rpc.BadRequest`` field violations for bad field values). Then ``faults.pick(token)``
  chooses an injected error: any name of ``FCM_ERRORS`` answers Google's envelope for it (with
  ``Retry-After`` from ``retry_after_s``); sandbox-only ``UNAUTHENTICATED`` answers a bare 401 as for
  an expired access token, ``STALL`` never answers, unknown names answer 400 with that errorCode.
  Otherwise ``200 {"name": "projects/<p>/messages/<id>"}`` (``validate_only`` requests answer
  ``.../messages/fake_message_id``, are recorded as ``"validated"`` and deliver nothing).
- Every ``messages:send`` request is recorded in ``recorder`` (target = registration token, payload
  = the ``message`` object, headers carry a hash of the bearer token and the client's port).
  ``token_requests``/``tokens_issued`` count the token endpoint; ``connections`` is the set of client
  ports that sent messages (each one a TCP connection, so tests can bound the pool).

Run it in a test's event loop (``await start()``/``await stop()``) or on a thread of its own
(``FcmSandbox.run_in_thread(...)``) when the sender is another process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from sandboxes.faults import FaultPlan, Received, Recorder
from sandboxes.threaded import ServingThread

GOOGLE_GRANT_AUDIENCE = "https://oauth2.googleapis.com/token"  # the aud google-auth puts in grant JWTs
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
QUOTA_FAILURE_TYPE = "type.googleapis.com/google.rpc.QuotaFailure"
UNAUTHENTICATED = "UNAUTHENTICATED"  # sandbox-only fault: a bare 401, as for an expired access token
STALL = "STALL"  # sandbox-only fault: never answer

# errorCode → (HTTP status, google.rpc status, message), as FCM answers them.
FCM_ERRORS: dict[str, tuple[int, str, str]] = {
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Messages'."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
}
DEFAULT_RETRY_AFTER_S: dict[str, float] = {"QUOTA_EXCEEDED": 60, "UNAVAILABLE": 10}

_UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential."
)
_MAX_PAYLOAD = 4096  # bytes of notification + data, FCM's limit for token messages
_MAX_TTL_S = 2_419_200  # 28 days
_TTL = re.compile(r"^(\d+)(\.\d{1,9})?s$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-:.]{1,4096}$")  # FCM tokens are URL-safe base64 plus ':'
_RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
_RESERVED_DATA_PREFIXES = ("google.", "gcm.")
_CLOCK_SKEW_S = 60
_MAX_ASSERTION_LIFETIME_S = 3600


@dataclass(frozen=True)
class ServiceAccount:
    """A test service-account key file and the public half a sandbox verifies its JWTs with."""

    path: Path
    client_email: str
    key_id: str
    public_key_pem: str
    project_id: str


def write_service_account(
    directory: Path,
    *,
    token_uri: str,
    project_id: str = "notify-sandbox",
    client_email: str | None = None,
    filename: str = "fcm-service-account.json",
    key: rsa.RSAPrivateKey | None = None,
) -> ServiceAccount:
    """Write a service-account JSON in the layout Google's console downloads.

    ``key`` defaults to a fresh RSA-2048 key; pass one to save the ~50 ms of generating it.
    """
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    email = client_email or f"notify-sender@{project_id}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key_id,
        "private_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(json.dumps(info, indent=2))
    path.chmod(0o600)  # a private key: owner-only, as a real key file should be
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return ServiceAccount(path, email, key_id, public_pem, project_id)


def error_envelope(code: int, status: str, message: str, *details: Mapping[str, Any]) -> dict[str, Any]:
    """Google's error body: ``{"error": {"code", "message", "status", "details"?}}``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = [dict(d) for d in details]
    return {"error": error}


def fcm_error(error_code: str) -> dict[str, str]:
    return {"@type": FCM_ERROR_TYPE, "errorCode": error_code}


@dataclass(frozen=True)
class _Trusted:
    key_id: str
    public_key: PublicKeyTypes


class _Rejected(Exception):
    """A request the sandbox refuses: the HTTP status, the body and any extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, dict(headers or {})


class FcmSandbox:
    """One FCM project endpoint plus its OAuth token endpoint on ``host:port`` (0 = a free port)."""

    def __init__(
        self,
        *,
        project_id: str = "notify-sandbox",
        host: str = "127.0.0.1",
        port: int = 0,
        token_expires_in: int = 3600,
        retry_after_s: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.project_id = project_id
        self.faults = FaultPlan()
        self.recorder = Recorder()
        self.token_requests = 0  # every POST /token, granted or refused
        self.tokens_issued = 0
        self.connections: set[int] = set()  # client ports that sent messages: one per TCP connection
        self.retry_after_s = dict(DEFAULT_RETRY_AFTER_S if retry_after_s is None else retry_after_s)
        self._token_expires_in, self._clock = token_expires_in, clock
        self._host, self._port = host, port
        self._lock = threading.Lock()  # trusted keys and tokens are touched from test threads too
        self._trusted: dict[str, _Trusted] = {}
        self._issued: dict[str, float] = {}  # access token → expiry (clock seconds)
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    # --- addresses and credentials ----------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        """The base URL an adapter's ``fcm_endpoint`` names."""
        return f"http://{self._host}:{self._port}"

    @property
    def token_uri(self) -> str:
        return f"{self.endpoint}/token"

    def trust(self, account: ServiceAccount) -> None:
        """Accept grant JWTs from ``account`` (replacing any key trusted for its email)."""
        public_key = serialization.load_pem_public_key(account.public_key_pem.encode())
        with self._lock:
            self._trusted[account.client_email] = _Trusted(account.key_id, public_key)

    def create_service_account(self, directory: Path, **kwargs: Any) -> ServiceAccount:
        """A key file whose ``token_uri`` is this sandbox, trusted here. Call after ``start()``."""
        if self._port == 0:
            raise RuntimeError("start the sandbox first: the key file names its token URL")
        account = write_service_account(
            directory, token_uri=self.token_uri, project_id=self.project_id, **kwargs
        )
        self.trust(account)
        return account

    def expire_tokens(self) -> None:
        """Forget every issued access token, as if they had all expired: the next send gets 401."""
        with self._lock:
            self._issued.clear()

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = self._runner.addresses
        self._port = int(sockets[0][1])

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # stalled requests end now, so shutdown does not wait for them
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @classmethod
    def run_in_thread(cls, **kwargs: Any) -> FcmSandboxThread:
        """Start a sandbox on a daemon thread with its own event loop; ``kwargs`` as for ``__init__``."""
        return FcmSandboxThread(cls(**kwargs), "fcm-sandbox")

    # --- POST /token ------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        grant_type, assertion = form.get("grant_type"), form.get("assertion")
        if grant_type != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type: " + str(grant_type or ""))
        if not isinstance(assertion, str) or not assertion:
            return _oauth_error("invalid_request", "Missing required parameter: assertion")
        refusal = self._check_assertion(assertion, token_uri=str(request.url.with_query(None)))
        if refusal is not None:
            return _oauth_error(*refusal)
        access_token = "ya29.sandbox-" + secrets.token_urlsafe(32)
        with self._lock:
            self._issued[access_token] = self._clock() + self._token_expires_in
            self.tokens_issued += 1
        return web.json_response(
            {"access_token": access_token, "expires_in": self._token_expires_in, "token_type": "Bearer"}
        )

    def _check_assertion(self, assertion: str, *, token_uri: str) -> tuple[str, str] | None:
        """(error, description) in Google's words when the grant JWT is refused, else None."""
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return "invalid_grant", "Invalid JWT: could not be decoded."
        with self._lock:
            trusted = self._trusted.get(str(unverified.get("iss", "")))
        if trusted is None:
            return "invalid_grant", "Invalid grant: account not found"
        if header.get("alg") != "RS256" or header.get("kid", trusted.key_id) != trusted.key_id:
            return "invalid_grant", "Invalid JWT Signature."
        try:
            claims = jwt.decode(
                assertion,
                key=trusted.public_key,  # type: ignore[arg-type]  # load_pem_public_key's union
                algorithms=["RS256"],
                audience=[GOOGLE_GRANT_AUDIENCE, token_uri],
                options={"require": ["iss", "aud", "iat", "exp"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            return "invalid_grant", "Invalid JWT Signature."
        except jwt.InvalidAudienceError:
            return "invalid_grant", "Invalid JWT: Failed audience check."
        except jwt.PyJWTError as exc:
            return "invalid_grant", f"Invalid JWT: {exc}"
        iat, exp, now = claims["iat"], claims["exp"], self._clock()
        # Checked here with the sandbox's own clock (PyJWT would use the wall clock).
        if not (
            isinstance(iat, int | float)
            and isinstance(exp, int | float)
            and iat - _CLOCK_SKEW_S <= now < exp + _CLOCK_SKEW_S
            and 0 < exp - iat <= _MAX_ASSERTION_LIFETIME_S
        ):
            return "invalid_grant", (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                "timeframe. Check your iat and exp values in the JWT claim."
            )
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return "invalid_scope", "Invalid OAuth scope or ID token audience provided."
        return None

    # --- POST /v1/projects/{project}/messages:send ------------------------------------------------
    async def _send(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        headers: dict[str, str] = {}
        if peer:
            self.connections.add(int(peer[1]))
            headers["x-sandbox-connection"] = str(peer[1])
        bearer = request.headers.get("Authorization", "")
        if bearer:
            headers["x-sandbox-token"] = hashlib.sha256(bearer.encode()).hexdigest()[:12]
        raw = await request.read()
        body = _json_object(raw)
        message = body.get("message") if isinstance(body, dict) else None
        message = message if isinstance(message, dict) else {}
        target = message.get("token")
        target = target if isinstance(target, str) else ""
        try:
            self._authorize(bearer, request.match_info["project"])
            _validate(body)
            fault = self.faults.pick(target)
        except _Rejected as rejected:
            answered = _answered_as(rejected)
            self.recorder.add(Received(target=target, payload=message, headers=headers, answered=answered))
            return web.json_response(rejected.body, status=rejected.status, headers=rejected.headers)
        if fault is None and body.get("validate_only") is True:
            # A dry run: FCM checks the message, sends nothing and answers a fixed fake name.
            self.recorder.add(Received(target=target, payload=message, headers=headers, answered="validated"))
            return web.json_response({"name": f"projects/{self.project_id}/messages/fake_message_id"})
        self.recorder.add(Received(target=target, payload=message, headers=headers, answered=fault or "ok"))
        if fault is None:
            name = f"projects/{self.project_id}/messages/0:{time.time_ns()}%{uuid.uuid4().hex[:16]}"
            return web.json_response({"name": name})
        if fault == STALL:
            assert self._stopping is not None
            await self._stopping.wait()
            raise web.HTTPServiceUnavailable()  # only reached while shutting down
        if fault == UNAUTHENTICATED:
            return web.json_response(
                error_envelope(401, UNAUTHENTICATED, _UNAUTHENTICATED_MESSAGE), status=401
            )
        code, status, text = FCM_ERRORS.get(fault, (400, "INVALID_ARGUMENT", f"Injected {fault}."))
        details: list[dict[str, Any]] = [fcm_error(fault)]
        if fault == "QUOTA_EXCEEDED":
            details.append(
                {
                    "@type": QUOTA_FAILURE_TYPE,
                    "violations": [{"subject": "[DEVICE]", "description": "Device message rate exceeded."}],
                }
            )
        extra = {}
        if fault in self.retry_after_s:
            extra["Retry-After"] = str(int(self.retry_after_s[fault]))
        return web.json_response(error_envelope(code, status, text, *details), status=code, headers=extra)

    def _authorize(self, bearer: str, project: str) -> None:
        scheme, _, token = bearer.partition(" ")
        with self._lock:
            expiry = self._issued.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or self._clock() >= expiry:
            raise _Rejected(401, error_envelope(401, UNAUTHENTICATED, _UNAUTHENTICATED_MESSAGE))
        if project != self.project_id:
            text = (
                "Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
            )
            raise _Rejected(403, error_envelope(403, "PERMISSION_DENIED", text))


class FcmSandboxThread(ServingThread[FcmSandbox]):
    """Handle on a sandbox serving from its own thread; ``faults`` and ``recorder`` are thread-safe."""

    @property
    def endpoint(self) -> str:
        return self.sandbox.endpoint

    @property
    def faults(self) -> FaultPlan:
        return self.sandbox.faults

    @property
    def recorder(self) -> Recorder:
        return self.sandbox.recorder

    def create_service_account(self, directory: Path, **kwargs: Any) -> ServiceAccount:
        return self.sandbox.create_service_account(directory, **kwargs)


# --- request validation ---------------------------------------------------------------------------
def _validate(body: Any) -> None:
    """Raise the 400 FCM answers for a body it cannot send (checked in the order FCM reports them)."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise _bad_request("Invalid JSON payload received. 'message' must be an object.", "message")
    if not isinstance(body.get("validate_only", False), bool):
        raise _bad_request("Invalid value at 'validate_only' (TYPE_BOOL)", "validate_only")
    message: dict[str, Any] = body["message"]
    targets = [k for k in ("token", "topic", "condition") if k in message]
    if not targets:
        raise _invalid_argument("Recipient of the message is not set.")
    if len(targets) > 1:
        raise _invalid_argument("Invalid value at 'message' (oneof), oneof field 'target' is already set.")
    token = message.get("token")
    if "token" in targets and not (isinstance(token, str) and _TOKEN.match(token)):
        raise _invalid_argument("The registration token is not a valid FCM registration token")
    data = message.get("data", {})
    if not isinstance(data, dict):
        raise _bad_request("Invalid value at 'message.data' (map)", "message.data")
    for index, (key, value) in enumerate(data.items()):
        if not isinstance(value, str):
            field = f"message.data[{index}].value"
            raise _bad_request(f"Invalid value at '{field}' (TYPE_STRING), {json.dumps(value)}", field)
        if key in _RESERVED_DATA_KEYS or key.startswith(_RESERVED_DATA_PREFIXES):
            raise _invalid_argument(f"Invalid data payload key: {key}")
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or not all(isinstance(v, str) for v in notification.values()):
        raise _bad_request("Invalid value at 'message.notification'", "message.notification")
    _validate_android(message.get("android", {}))
    size = len(json.dumps({"notification": notification, "data": data}, separators=(",", ":")).encode())
    if size > _MAX_PAYLOAD:
        raise _invalid_argument("Message is too big")


def _validate_android(android: Any) -> None:
    if not isinstance(android, dict):
        raise _bad_request("Invalid value at 'message.android'", "message.android")
    priority = android.get("priority", "normal")
    if not isinstance(priority, str) or priority.lower() not in {"normal", "high"}:
        field = "message.android.priority"
        raise _bad_request(
            f"Invalid value at '{field}' (type.googleapis.com/google.firebase.fcm.v1."
            f"AndroidMessagePriority), {json.dumps(priority)}",
            field,
        )
    ttl = android.get("ttl", "0s")
    match = _TTL.match(ttl) if isinstance(ttl, str) else None
    if match is None:
        field = "message.android.ttl"
        raise _bad_request(
            f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration), {json.dumps(ttl)}",
            field,
        )
    if int(match.group(1)) > _MAX_TTL_S:
        raise _invalid_argument("TTL is out of range. It must be between 0 and 2419200 seconds.")
    if not isinstance(android.get("collapse_key", ""), str):
        raise _bad_request("Invalid value at 'message.android.collapse_key'", "message.android.collapse_key")


def _invalid_argument(text: str) -> _Rejected:
    return _Rejected(400, error_envelope(400, "INVALID_ARGUMENT", text, fcm_error("INVALID_ARGUMENT")))


def _bad_request(text: str, field: str) -> _Rejected:
    violation = {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": field, "description": text}]}
    return _Rejected(400, error_envelope(400, "INVALID_ARGUMENT", text, violation))


def _answered_as(rejected: _Rejected) -> str:
    """The recorded answer: the FcmError code when there is one, else the google.rpc status."""
    error = rejected.body.get("error", {})
    for detail in error.get("details", ()):
        if detail.get("@type") == FCM_ERROR_TYPE:
            return str(detail["errorCode"])
    return str(error.get("status", rejected.status))


def _json_object(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)

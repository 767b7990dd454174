"""Amazon SNS SMS sandbox: moto in server mode, with a WSGI middleware for faults and recording.

Contract (what a client such as boto3 sees at ``endpoint``, e.g. ``http://127.0.0.1:PORT``):

- Every AWS Query request is answered by moto 5.2's server app, so SNS behaves as moto
  models it. For example, a number that is not E.164 gets ``InvalidParameter`` (400), and
  ``/moto-api/data.json`` lists the SMS that moto accepted.
- ``Publish`` with a ``PhoneNumber`` first asks ``faults.pick(phone)``. An injected error is
  answered the way SNS answers it, and moto never sees the request: HTTP status from ``ERROR_STATUS``
  (unknown names get 400), with the body
  ``<ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/></Error><RequestId/></ErrorResponse>``.
  A fault name may carry its own message after the first colon:
  ``"InvalidParameter: Invalid parameter: Message too long"``. ``STALL`` holds the answer for
  ``stall_s`` seconds and then answers 500 ``InternalError``, so a client's read timeout fires first.
- Every ``Publish`` is recorded in ``recorder``, whether a fault answered it or moto did:
  ``Received(target=phone (or the topic/target ARN), payload={"message", "attributes": {name: value},
  "data_types": {name: DataType}, "message_id"}, answered="ok" | error code)``. moto does not store
  MessageAttributes for SMS, so ``attributes`` is where tests read SMSType and SenderID.

Why a WSGI middleware rather than an HTTP proxy in front of moto: it runs in the server's own request
thread, so there is one hop and one socket, no HTTP to parse or forward again (keep-alive, chunking,
hop-by-hop headers), and moto's answers pass through byte for byte. The server is waitress, not moto's
werkzeug one, so connections stay alive as they do at SNS (see ``_Server``), and moto's per-request
backend lookup is done once per credential scope (see ``_Dispatcher``). moto is pinned at 5.2.5.

moto keeps its state per process: two sandboxes in one process share moto's SNS backend, but each
has its own ``faults`` and ``recorder``.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import waitress.server  # type: ignore[import-untyped]
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress import wasyncore

from sandboxes.faults import FaultPlan, Received, Recorder

WsgiEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[WsgiEnviron, StartResponse], Iterable[bytes]]

STALL = "Stall"
_POLL_S = 0.05  # how soon the serving thread hears stop()
_THREADS = 64  # waitress's request threads: client pools of up to 32, plus requests held by a Stall
_XMLNS = "http://sns.amazonaws.com/doc/2010-03-31/"
# Error codes SNS (botocore's model) and the AWS Query layer answer, with their HTTP status.
ERROR_STATUS: dict[str, int] = {
    "Throttling": 400,
    "ThrottlingException": 400,
    "Throttled": 429,
    "KMSThrottling": 400,
    "InternalError": 500,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
    "RequestExpired": 400,
    "InvalidParameter": 400,
    "ParameterValueInvalid": 400,
    "ValidationException": 400,
    "OptedOut": 400,
    "UserError": 400,
    "EndpointDisabled": 400,
    "KMSDisabled": 400,
    "KMSInvalidState": 400,
    "KMSNotFound": 400,
    "KMSAccessDenied": 400,
    "KMSOptInRequired": 403,
    "AuthorizationError": 403,
    "InvalidClientTokenId": 403,
    "SignatureDoesNotMatch": 403,
    "InvalidSecurity": 403,
    "AccessDenied": 403,
    "IncompleteSignature": 400,
    "MissingAuthenticationToken": 403,
    "ExpiredToken": 400,
    "NotFound": 404,
}
_DEFAULT_MESSAGES: dict[str, str] = {
    "Throttling": "Rate exceeded",
    "Throttled": "Rate exceeded",
    "InternalError": "Internal Error",
    "ServiceUnavailable": "Service is unavailable",
    "OptedOut": "Phone number is opted out",
    # Real SNS echoes the number: clients must keep it out of their logs.
    "InvalidParameter": "Invalid parameter: PhoneNumber Reason: {target} is not valid to publish to",
    "ParameterValueInvalid": "Invalid parameter: PhoneNumber Reason: {target} is not valid to publish to",
    "AuthorizationError": "User is not authorized to perform: SNS:Publish",
    "InvalidClientTokenId": "The security token included in the request is invalid.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the signature you provided.",
}


def error_body(code: str, message: str, status: int, request_id: str) -> bytes:
    """The SNS (AWS Query) error document botocore parses into ``ClientError``."""
    kind = "Receiver" if status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{_XMLNS}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def parse_publish(params: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """(target, recorded payload) of a Publish request's form parameters."""
    target = params.get("PhoneNumber") or params.get("TargetArn") or params.get("TopicArn") or ""
    attributes: dict[str, str] = {}
    data_types: dict[str, str] = {}
    prefix = "MessageAttributes.entry."
    for key, name in params.items():
        if key.startswith(prefix) and key.endswith(".Name"):
            entry = key[: -len("Name")]
            value = params.get(entry + "Value.StringValue", params.get(entry + "Value.BinaryValue", ""))
            attributes[name] = value
            data_types[name] = params.get(entry + "Value.DataType", "")
    payload: dict[str, Any] = {
        "message": params.get("Message"),
        "attributes": attributes,
        "data_types": data_types,
        "message_id": None,
    }
    return target, payload


class FaultMiddleware:
    """WSGI layer in front of moto's app: injects SNS errors into Publish and records every Publish."""

    def __init__(
        self, app: WsgiApp, faults: FaultPlan, recorder: Recorder, stop: threading.Event, stall_s: float
    ) -> None:
        self._app, self.faults, self.recorder = app, faults, recorder
        self._stop, self._stall_s = stop, stall_s

    def __call__(self, environ: WsgiEnviron, start_response: StartResponse) -> Iterable[bytes]:
        body = self._read_body(environ)
        params = _form(environ, body)
        if params.get("Action") != "Publish":
            return self._app(environ, start_response)
        target, payload = parse_publish(params)
        fault = self.faults.pick(target) if params.get("PhoneNumber") else None
        if fault is not None:
            return self._inject(fault, target, payload, start_response)
        return self._pass_through(environ, start_response, target, payload)

    def _inject(
        self, fault: str, target: str, payload: dict[str, Any], start_response: StartResponse
    ) -> list[bytes]:
        name, _, message = (part.strip() for part in fault.partition(":"))
        code = name
        self.recorder.add(Received(target=target, payload=payload, answered=name))  # on arrival, even a stall
        if name == STALL:
            self._stop.wait(self._stall_s)  # stop() ends the wait, so shutdown never hangs on it
            code = "InternalError"
        status = ERROR_STATUS.get(code, 400)
        message = message or _DEFAULT_MESSAGES.get(code, "Injected {code}").format(code=code, target=target)
        request_id = str(uuid.uuid4())
        response = error_body(code, message, status, request_id)
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [
                ("Content-Type", "text/xml"),
                ("Content-Length", str(len(response))),
                ("x-amzn-RequestId", request_id),
            ],
        )
        return [response]

    def _pass_through(
        self, environ: WsgiEnviron, start_response: StartResponse, target: str, payload: dict[str, Any]
    ) -> list[bytes]:
        answer: dict[str, Any] = {}
        chunks: list[bytes] = []

        # Buffer moto's answer: the Publish is recorded before the client can see the reply.
        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            answer["status"], answer["headers"] = status, headers
            return chunks.append

        result = self._app(environ, capture)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        body = b"".join(chunks)
        answered, message_id = _outcome(str(answer.get("status", "500")), body)
        payload["message_id"] = message_id
        self.recorder.add(Received(target=target, payload=payload, answered=answered))
        start_response(answer.get("status", "500 INTERNAL SERVER ERROR"), answer.get("headers", []))
        return [body]

    @staticmethod
    def _read_body(environ: WsgiEnviron) -> bytes:
        """A form body (AWS Query), read once and put back for moto; any other body is left alone.

        Other services (S3 uploads, chunked bodies) share this server and must stream through untouched.
        """
        if not str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
            return b""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return b""
        if length <= 0:
            return b""
        body: bytes = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return body


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, keeping the app it finds for each signed AWS Query request's (region, service).

    moto looks the backend up anew for every request: a scan of every service's URL patterns under one
    lock, which was 80% of this sandbox's CPU per ``Publish`` (3.7 ms). The answer for a request to
    ``/`` depends only on its credential scope, so it is looked up once; anything else (``/moto-api``,
    unsigned or path-routed requests) still takes moto's own lookup.
    """

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._by_scope: dict[tuple[str, str], Any] = {}

    def get_application(self, environ: WsgiEnviron) -> Any:
        scope = credential_scope(environ) if environ.get("PATH_INFO") == "/" else None
        if scope is None:
            return super().get_application(environ)
        app = self._by_scope.get(scope)
        if app is None:
            app = self._by_scope[scope] = super().get_application(environ)
        return app


def credential_scope(environ: WsgiEnviron) -> tuple[str, str] | None:
    """(region, service) of a SigV4 ``Authorization`` header, or None when there is none to read.

    ``AWS4-HMAC-SHA256 Credential=KEY/20261202/us-east-1/sns/aws4_request, SignedHeaders=..., ...``
    """
    auth = str(environ.get("HTTP_AUTHORIZATION") or "")
    _, found, rest = auth.partition("Credential=")
    parts = rest.split(",", 1)[0].split("/")
    if not found or len(parts) != 5 or parts[4] != "aws4_request":
        return None
    return parts[2], parts[3].lower()


class _Server:
    """moto's app, wrapped in ``wrap``, served by waitress on ``host:port`` from a thread of its own.

    Not moto's own ``ThreadedMotoServer``: werkzeug's development server answers every request with
    ``Connection: close``, so each ``Publish`` cost the client a new TCP connection and the sandbox a
    new thread, unlike SNS, which keeps connections alive. waitress keeps them alive and serves them
    from a fixed pool of ``threads``, enough for every client pool here plus stalled requests.
    """

    def __init__(self, wrap: Callable[[WsgiApp], WsgiApp], host: str, port: int, threads: int) -> None:
        app = wrap(_Dispatcher())
        self._server: Any = waitress.server.create_server(app, host=host, port=port, threads=threads)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sns-sandbox", daemon=True)

    def _serve(self) -> None:
        # One short poll at a time, so stop() is heard within _POLL_S; waitress's own run() loops
        # until its socket map is empty, which only this thread may safely make so.
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=_POLL_S, map=self._server._map, count=1)
        finally:
            self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
            wasyncore.close_all(self._server._map)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def get_host_and_port(self) -> tuple[str, int]:
        return str(self._server.effective_host), int(self._server.effective_port)


class SnsSandbox:
    """One SNS endpoint on ``host:port`` (0 = pick a free port). Also a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, stall_s: float = 5.0) -> None:
        self.faults = FaultPlan()
        self.recorder = Recorder()
        self._stopping = threading.Event()
        self._stall_s = stall_s
        self._host, self._port = host, port
        self._server: _Server | None = None  # built by start(): the middleware takes recorder then

    @classmethod
    def run_in_thread(cls, **kwargs: Any) -> SnsSandbox:
        """Start a sandbox serving from its own thread; ``kwargs`` as for ``__init__``."""
        sandbox = cls(**kwargs)
        sandbox.start()
        return sandbox

    def _middleware(self, app: WsgiApp) -> WsgiApp:
        return FaultMiddleware(app, self.faults, self.recorder, self._stopping, self._stall_s)

    def start(self) -> None:
        if self._server is None:
            self._server = _Server(self._middleware, self._host, self._port, _THREADS)
            self._server.start()

    def _address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the SNS sandbox is not started")
        return self._server.get_host_and_port()

    @property
    def port(self) -> int:
        return self._address()[1]

    @property
    def endpoint(self) -> str:
        host, port = self._address()
        return f"http://{host}:{port}"

    def moto_sms(self) -> list[dict[str, Any]]:
        """The SMS moto accepted (``message_id``, ``phone_number``, ``message``), from its own bookkeeping."""
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=10) as response:  # noqa: S310
            data: dict[str, Any] = json.load(response)
        return list(data.get("sns", {}).get("SMS", []))

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._stopping.set()
            server.stop()

    def __enter__(self) -> SnsSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _form(environ: WsgiEnviron, body: bytes) -> dict[str, str]:
    """AWS Query parameters: form-encoded body (what boto3 sends) or the query string."""
    raw = body.decode("utf-8", "replace") if body else str(environ.get("QUERY_STRING", ""))
    return {key: values[-1] for key, values in parse_qs(raw, keep_blank_values=True).items()}


def _outcome(status: str, body: bytes) -> tuple[str, str | None]:
    """("ok", MessageId) for a 2xx answer, (error code, None) otherwise."""
    if status.startswith("2"):
        return "ok", _find(body, "MessageId")
    return _find(body, "Code") or status.split(" ", 1)[0], None


def _find(body: bytes, tag: str) -> str | None:
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - moto's own answer, on loopback
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == tag:
            return element.text
    return None

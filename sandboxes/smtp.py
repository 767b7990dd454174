"""SMTP sandbox: an aiosmtpd server on loopback that answers like a receiving MTA or relay.

Contract (what a client sees):

- Plain SMTP on ``host:port`` (port 0 = a free port, read back from ``.port``), with STARTTLS offered
  when ``cert_dir`` is given (the test CA of ``sandboxes.tls``; ``.ca_path`` is what clients trust).
  ``require_starttls`` refuses mail before STARTTLS (530). ``credentials=(user, password)`` requires
  AUTH (PLAIN/LOGIN, only after STARTTLS, as aiosmtpd insists): wrong ones get 535 5.7.8.
- For each RCPT, ``faults.pick(address)`` chooses the answer. ``None`` accepts (250). A reply code
  of ``REPLIES`` ("421", "450", "451", "452", "550" ... "554") answers with that code's real text;
  any full reply line (``"550 5.7.1 Message rejected as spam"``) is answered verbatim. ``"421"``
  then closes the connection, as servers do. ``"data:<code or line>"`` accepts the RCPT and answers
  DATA with it instead (the ``SMTPDataError`` path). ``DROP`` closes the connection without an
  answer; ``STALL`` never answers; ``data:DROP`` / ``data:STALL`` do so after taking the message.
- Every RCPT refused and every message accepted is recorded in ``recorder``: ``target`` is the
  recipient, ``answered`` "ok" or the fault. An accepted message's ``payload`` holds ``subject``
  (decoded), ``message_id``, ``list_unsubscribe``, ``list_unsubscribe_post`` (raw header values,
  unfolded, not RFC 2047-decoded: what a receiver's unsubscribe logic reads), ``text`` and ``html``
  (decoded parts, None when absent). ``headers`` hold from/to/date/mail_from and the session facts
  ``x-sandbox-tls`` ("yes"/"no"), ``x-sandbox-auth`` (login or "") and ``x-sandbox-connection``.
- ``connections_opened`` counts client connections (a pool that reuses keeps it small);
  ``drop_connections()`` closes every open one, as a server restart would.

aiosmtpd serves from a thread of its own, so the same handle works for a test in any event loop and
for a worker in another process: ``with SmtpSandbox.run_in_thread(cert_dir=...) as smtp: ...``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import re
import threading
import weakref
from collections.abc import Awaitable
from email import policy
from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from sandboxes.faults import FaultPlan, Received, Recorder
from sandboxes.tls import CertPaths, ensure_certs, server_context

REPLIES: dict[str, str] = {
    "421": "421 4.3.2 Service not available, closing transmission channel",
    "450": "450 4.2.1 Mailbox temporarily unavailable, try again later",
    "451": "451 4.3.0 Requested action aborted: local error in processing",
    "452": "452 4.2.2 Mailbox full, try again later",
    "550": "550 5.1.1 User unknown",
    "551": "551 5.1.6 User not local; please try <forward-path>",
    "552": "552 5.2.2 Requested mail action aborted: exceeded storage allocation",
    "553": "553 5.1.3 Mailbox name not allowed",
    "554": "554 5.7.1 Relay access denied",
}
DROP = "DROP"
STALL = "STALL"
DATA_FAULT_PREFIX = "data:"
SERVER_NAME = "sandbox.smtp.test"  # skips aiosmtpd's getfqdn() per connection

_ACCEPTED = "250 2.1.5 OK"
_REPLY_LINE = re.compile(r"^[2-5]\d\d[ -].*")
_FOREVER_S = 24 * 3600.0  # "never answer": cancelled when the connection closes


def reply_for(fault: str) -> str:
    """The reply line a fault name stands for (unknown bare codes get a generic text)."""
    if fault in REPLIES:
        return REPLIES[fault]
    if _REPLY_LINE.match(fault):
        return fault
    if re.fullmatch(r"[2-5]\d\d", fault):
        return f"{fault} sandbox fault"
    raise ValueError(f"not an SMTP fault: {fault!r}")


class SmtpSandbox:
    """One SMTP endpoint on ``host:port``; ``start()`` serves it from a thread of its own."""

    def __init__(
        self,
        *,
        cert_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        require_starttls: bool = False,
        credentials: tuple[str, str] | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        if credentials is not None and cert_dir is None:
            # aiosmtpd only offers AUTH over TLS (and warns when told otherwise): so do we.
            raise ValueError("credentials need STARTTLS: pass cert_dir too")
        self.faults = FaultPlan()
        self.recorder = Recorder()
        self._certs: CertPaths | None = ensure_certs(cert_dir) if cert_dir is not None else None
        self._credentials = credentials
        self._lock = threading.Lock()
        self._opened = 0
        self._live: set[_Server] = set()
        self._data_faults: weakref.WeakKeyDictionary[Envelope, str] = weakref.WeakKeyDictionary()
        tls = server_context(self._certs, alpn=()) if self._certs is not None else None
        smtp_kwargs: dict[str, Any] = {
            "server_hostname": SERVER_NAME,
            "tls_context": tls,
            "require_starttls": require_starttls and tls is not None,
            "timeout": timeout_s,
        }
        if credentials is not None:
            smtp_kwargs.update(authenticator=self._authenticate, auth_required=True)
        self._controller = _Controller(self, _Handler(self), hostname=host, port=port, **smtp_kwargs)
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def run_in_thread(cls, **kwargs: Any) -> SmtpSandbox:
        """A started sandbox (``kwargs`` as for ``__init__``); ``stop()`` it, or use it in ``with``."""
        sandbox = cls(**kwargs)
        sandbox.start()
        return sandbox

    def start(self) -> None:
        self._controller.start()
        with self._lock:
            # The controller's own readiness probe opened one connection: not a client's.
            self._opened = 0
        self._started = True

    def stop(self) -> None:
        """Reset every client connection, then stop the server and its thread."""
        if not self._started:
            return
        self._started = False
        # Close sessions first: aiosmtpd's stop() would only cancel their tasks and leave the
        # sockets to the garbage collector (ResourceWarnings). Reset rather than close: a TLS close
        # waits for the client's close_notify, which never comes when stop() blocks the client's loop.
        self.drop_connections(abort=True, timeout_s=2.0)
        self._controller.stop()

    def __enter__(self) -> SmtpSandbox:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests read ---------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self._controller.hostname)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def ca_path(self) -> Path | None:
        return self._certs.ca_cert if self._certs is not None else None

    @property
    def connections_opened(self) -> int:
        with self._lock:
            return self._opened

    @property
    def connections_open(self) -> int:
        with self._lock:
            return len(self._live)

    def drop_connections(self, *, abort: bool = False, timeout_s: float = 5.0) -> None:
        """Close every client connection (as a restarting server would); return once they are gone.

        A TLS close waits for the client's close_notify: from a thread whose event loop runs those
        clients, use ``drop_connections_async`` so they can answer. ``abort`` resets instead.
        """
        self._drop(abort, timeout_s).result(timeout=timeout_s + 1)

    async def drop_connections_async(self, *, abort: bool = False, timeout_s: float = 5.0) -> None:
        await asyncio.wrap_future(self._drop(abort, timeout_s))

    def _drop(self, abort: bool, timeout_s: float) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(self._drop_all(abort, timeout_s), self._controller.loop)

    # --- the server side ---------------------------------------------------------------------------
    def _connection_number(self) -> int:
        with self._lock:
            self._opened += 1
            return self._opened

    def _track(self, server: _Server, *, live: bool) -> None:
        with self._lock:
            if live:
                self._live.add(server)
            else:
                self._live.discard(server)

    async def _drop_all(self, abort: bool, timeout_s: float) -> None:
        with self._lock:
            live = list(self._live)
        for server in live:
            server.hang_up(abort=abort)
        if not live:
            return
        # A TLS close waits for the client's close_notify; a client that never sends it is reset.
        _, stuck = await asyncio.wait([server.closed for server in live], timeout=timeout_s)
        for server in live:
            if server.closed in stuck:
                server.hang_up(abort=True)
        if stuck:
            await asyncio.wait(stuck, timeout=1.0)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        expected = self._credentials
        if expected is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = hmac.compare_digest(auth_data.login, expected[0].encode()) & hmac.compare_digest(
            auth_data.password, expected[1].encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def rcpt(self, server: _Server, envelope: Envelope, address: str) -> str:
        fault = self.faults.pick(address)
        if fault is None:
            envelope.rcpt_tos.append(address)
            return _ACCEPTED
        if fault.startswith(DATA_FAULT_PREFIX):
            self._data_faults[envelope] = fault
            envelope.rcpt_tos.append(address)
            return _ACCEPTED
        self.recorder.add(Received(target=address, payload={}, headers=server.facts(), answered=fault))
        if fault in (DROP, STALL):
            if fault == DROP:
                server.hang_up()
            await asyncio.sleep(_FOREVER_S)  # cancelled by aiosmtpd when the connection goes
            return "451 4.3.0 unreachable"
        reply = reply_for(fault)
        if reply.startswith("421"):
            await server.push(reply)
            server.hang_up()
            await asyncio.sleep(_FOREVER_S)
        return reply

    async def data(self, server: _Server, envelope: Envelope) -> str:
        fault = self._data_faults.pop(envelope, None)
        content = envelope.original_content or b""
        payload, headers = _parse(content)
        headers.update(server.facts())
        headers["mail_from"] = envelope.mail_from or ""
        for rcpt in envelope.rcpt_tos:
            self.recorder.add(Received(target=rcpt, payload=payload, headers=headers, answered=fault or "ok"))
        if fault is None:
            return f"250 2.0.0 OK: queued as {server.number}-{len(self.recorder)}"
        reply = fault.removeprefix(DATA_FAULT_PREFIX)
        if reply in (DROP, STALL):  # the message arrived, the client never hears so: a duplicate risk
            if reply == DROP:
                server.hang_up()
            await asyncio.sleep(_FOREVER_S)
        return reply_for(reply)


class _Handler:
    """aiosmtpd hooks: thin, so the behaviour lives on the sandbox."""

    def __init__(self, sandbox: SmtpSandbox) -> None:
        self._sandbox = sandbox

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        return await self._sandbox.rcpt(cast(_Server, server), envelope, address)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return await self._sandbox.data(cast(_Server, server), envelope)


class _Server(SMTP):
    """One client session; knows its number and tells the sandbox when it opens and closes."""

    def __init__(self, sandbox: SmtpSandbox, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sandbox = sandbox
        self.number = sandbox._connection_number()
        self.closed: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgraded = self.transport is not None  # STARTTLS calls this again with the TLS transport
        super().connection_made(transport)
        if not upgraded:
            self._sandbox._track(self, live=True)

    def connection_lost(self, error: Exception | None) -> None:
        self._sandbox._track(self, live=False)
        super().connection_lost(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def facts(self) -> dict[str, str]:
        session = self.session
        auth = session.auth_data if session is not None else None
        return {
            "x-sandbox-tls": "yes" if session is not None and session.ssl is not None else "no",
            "x-sandbox-auth": auth.login.decode() if isinstance(auth, LoginPassword) else "",
            "x-sandbox-connection": str(self.number),
        }

    def hang_up(self, *, abort: bool = False) -> None:
        transport = self.transport
        if transport is None:
            return
        if abort and isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()


class _Controller(Controller):
    """aiosmtpd's threaded controller, building ``_Server`` sessions and binding port 0 properly."""

    def __init__(self, sandbox: SmtpSandbox, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, ready_timeout=10.0, **kwargs)
        self._sandbox = sandbox

    def factory(self) -> SMTP:
        return _Server(self._sandbox, cast(_Handler, self.handler), **self.SMTP_kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
        )
        # With port 0 the OS picked one: record it before the controller's readiness probe uses it.
        self.port = server.sockets[0].getsockname()[1]
        return server


def _parse(content: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    # One parse with compat32, which keeps headers as text: policy.default's header objects cost
    # 1.7 ms a message, and the sandbox then took more CPU than the worker it serves. Only Subject
    # needs decoding; it goes through the very function policy.default would have applied.
    raw = BytesParser(policy=policy.compat32).parsebytes(content)
    # The header's source text: compat32's get() gives a Header object for 8-bit bytes (SMTPUTF8 mail).
    subject = next((v for k, v in raw.raw_items() if k.lower() == "subject"), None)
    text, html = _body(raw, "plain"), _body(raw, "html")
    payload: dict[str, Any] = {
        "subject": None if subject is None else str(policy.default.header_fetch_parse("Subject", subject)),
        "message_id": _raw(raw, "Message-ID"),
        "list_unsubscribe": _raw(raw, "List-Unsubscribe"),
        "list_unsubscribe_post": _raw(raw, "List-Unsubscribe-Post"),
        "text": text,
        "html": html,
    }
    headers = {name: _raw(raw, name) or "" for name in ("From", "To", "Date", "Content-Type")}
    return payload, {k.lower(): v for k, v in headers.items()}


def _raw(message: Message, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else re.sub(r"\r?\n(?=[ \t])", "", str(value)).strip()


def _body(message: Message, subtype: str) -> str | None:
    """The first inline text/<subtype> part's text (what ``get_body((subtype,))`` finds in our mail),
    decoded as policy.default's ``get_content`` does, with line breaks normalised to \\n."""
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == f"text/{subtype}":
            data = cast(bytes, part.get_payload(decode=True))
            text = data.decode(part.get_content_charset() or "us-ascii", errors="replace")
            # The wire form is CRLF, the rendered content was written with \n.
            return text.replace("\r\n", "\n")
    return None

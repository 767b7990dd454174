"""E-mail channel adapter: one decoded channel message in, one ``Outcome`` out, over SMTP (aiosmtplib 5.1).

Contract: ``await EmailAdapter(...).send(message)`` never raises for provider or transport trouble; it
returns ``classify(...)`` of the server's reply, or a retryable ``timeout`` / ``connection_error``.
Every send (connect, STARTTLS, AUTH and the mail transaction) is bounded by ``timeout_s``; waiting
for a free pool connection is not, because every holder of one is. The ``Message-ID`` is
``message_id_for(delivery_id, domain)``, so a retried delivery carries the same id: receivers and
our own bounce handling can recognise a duplicate. ``send`` returns ``Outcome.sent(<Message-ID>)``.

Design notes (aiosmtplib 5.1.3 and CPython 3.11 ``email``, read in their source):

- A bounded pool of ``pool_size`` connections, each used by one send at a time (aiosmtplib serialises
  a connection anyway), reused newest first so light traffic keeps one warm connection. A connection
  that failed mid-command, timed out or lost its server is closed and replaced on the next send.
- The transaction is MAIL, RCPT, DATA, issued here rather than by ``send_message`` so we know how
  far it got: a reused connection that the server closed while idle fails at MAIL (EOF, or 421
  "closing"), before any of the message reached the server, so the send moves to a fresh connection
  at once instead of reporting a retry. A failure after DATA is ambiguous (the message may have been
  queued); the retry it gives says so.
- After a refusal (4xx/5xx) the transaction is reset with RSET and the connection stays in the pool.
- The message is rendered 7-bit clean (quoted-printable/base64 parts, RFC 2047 subject), so neither
  8BITMIME nor SMTPUTF8 is needed. Two headers are folded here, not by the ``email`` package:
  CPython 3.11 drops the space between adjacent encoded words when folding a long non-ASCII subject
  (about 7% of long ones, measured), and it RFC 2047-encodes a List-Unsubscribe URL longer than a
  line, which receivers do not decode (RFC 2369 headers hold raw ``<URI>``s).
- ``classify`` turns a reply into an ``Outcome``; it deactivates the address only when the reply
  says the mailbox does not exist (enhanced status 5.1.x/5.2.1, or such words without one), never
  for a policy refusal such as "550 5.7.1 rejected as spam". Reply text reaches ``Outcome.detail``
  with e-mail addresses removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import re
import socket
import ssl
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from email.header import Header
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPConnectResponseError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)

from consumers.delivery.outcome import Outcome, Status
from notify_core.exceptions import ConfigError, NotifyError
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.tracking import Purpose, TrackedDelivery, TrackingSigner, unsubscribe_url

DEFAULT_TRANSACTIONAL: frozenset[str] = frozenset({"account", "security"})

_MESSAGE_ID_NAMESPACE = uuid.UUID("3b0c9d52-7f3e-4c8a-b1a4-2e6f5d9c8a70")
_SEND_ERRORS = (SMTPException, OSError, TimeoutError)
_MAX_SUBJECT = 998  # RFC 5322 line limit: longer is a rendering bug, not something to fold
_MAX_URL = 900  # List-Unsubscribe is written on one line, which must stay under 998 octets
_LINE = 78  # RFC 5322 recommended line length

# Enhanced status codes (RFC 3463) that say the address itself is dead.
_MAILBOX_GONE = frozenset(
    {
        "5.1.1",  # bad destination mailbox address (user unknown)
        "5.1.2",  # bad destination system address (no such domain)
        "5.1.3",  # bad destination mailbox address syntax
        "5.1.6",  # destination mailbox has moved, no forwarding address
        "5.1.10",  # recipient address has null MX (RFC 7505)
        "5.2.1",  # mailbox disabled, not accepting messages
    }
)
_DEACTIVATING_CODES = frozenset({550, 551, 553})
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# For servers that send no enhanced code: the usual wordings of "no such mailbox".
_UNKNOWN_MAILBOX = re.compile(
    r"\b(no such|unknown|invalid|nonexistent|non-existent) (user|recipient|mailbox|address|account)"
    r"|\b(user|recipient|mailbox|address|account)\b[^.;]{0,30}?"
    r"\b(unknown|not found|does not exist|doesn't exist|not exist|invalid)",
    re.IGNORECASE,
)
_ADDRESS_IN_TEXT = re.compile(r"<?[^\s<>@\"]+@[^\s<>@\"]+>?")
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}$")


class InvalidEmail(NotifyError, ValueError):
    """A channel message that cannot become a safe e-mail; ``send`` reports it as permanent."""

    def __init__(self, reason: str, detail: str, *, deactivate_target: bool = False) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.deactivate_target = reason, detail, deactivate_target


# --- pure helpers ---------------------------------------------------------------------------------


def message_id_for(delivery_id: str, domain: str) -> str:
    """The Message-ID of a delivery: the same for every attempt, unique per delivery."""
    return f"<{uuid.uuid5(_MESSAGE_ID_NAMESPACE, delivery_id)}@{domain}>"


def build_message(
    message: Mapping[str, Any],
    *,
    sender: str,
    unsubscribe_url: str | None,
    domain: str,
    transactional: Iterable[str] = DEFAULT_TRANSACTIONAL,
) -> EmailMessage:
    """The e-mail for one channel message (raises ``InvalidEmail`` for anything unsafe to send).

    ``sender`` is the From header (``"Name <addr>"``); ``domain`` names the Message-ID's right-hand
    side. Categories outside ``transactional`` get RFC 8058 one-click unsubscribe headers when an
    ``unsubscribe_url`` is given. Date is the delivery's ``created_at``, so a retry is byte-identical.
    """
    target = str(message.get("target") or "")
    _check_address(target)
    if _has_control(sender) or not _is_address(parseaddr(sender)[1]):
        raise InvalidEmail("invalid_sender", "the From header is not a single valid address")
    subject = message.get("email_subject")
    if subject is None:
        raise InvalidEmail("missing_subject", "the channel message has no email_subject")
    if _has_control(str(subject)):
        raise InvalidEmail("header_injection", "the subject contains a line break or control character")
    if len(str(subject)) > _MAX_SUBJECT:
        raise InvalidEmail("subject_too_long", f"the subject is longer than {_MAX_SUBJECT} characters")
    text, html = message.get("email_text"), message.get("email_html")
    if not text and not html:
        raise InvalidEmail("missing_body", "the channel message has neither email_text nor email_html")

    mail = EmailMessage(policy=_POLICY)
    mail["Subject"] = str(subject)
    mail["From"] = sender
    mail["To"] = target
    mail["Date"] = format_datetime(_as_utc(message.get("created_at")))
    mail["Message-ID"] = message_id_for(str(message["delivery_id"]), domain)
    category = str(message.get("category") or "")
    if unsubscribe_url is not None and category not in frozenset(transactional):
        _check_url(unsubscribe_url)
        mail["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if text:
        mail.set_content(str(text))
        if html:
            mail.add_alternative(str(html), subtype="html")
    else:
        mail.set_content(str(html), subtype="html")
    return mail


def classify(
    code: int, message: str, *, message_id: str | None = None, about_recipient: bool = True
) -> Outcome:
    """An SMTP reply as an ``Outcome`` (``message_id`` becomes the provider message id of a 2xx).

    ``about_recipient`` is False for replies to the greeting, EHLO, AUTH or MAIL: those refuse us or
    our sender, never show that the recipient's mailbox is gone.
    """
    if 200 <= code < 300:
        return Outcome.sent(message_id)
    detail = _detail(code, message)
    reason = str(code)
    if 400 <= code < 500:  # 421, 450, 451, 452, 454 ...: transient by definition (RFC 5321 4.2.1)
        return Outcome.retry(reason, detail=detail)
    if 500 <= code < 600:
        return Outcome.permanent(
            reason, deactivate_target=about_recipient and _mailbox_gone(code, message), detail=detail
        )
    return Outcome.retry("bad_response", detail=detail)  # 1xx/3xx where a final reply was due


def classify_exception(exc: BaseException) -> Outcome:
    """An aiosmtplib (or transport) exception as an ``Outcome``."""
    if isinstance(exc, SMTPRecipientsRefused):
        outcomes = [classify(r.code, r.message) for r in exc.recipients]
        if not outcomes:
            return Outcome.retry("bad_response", detail="recipients refused without a reply")
        # Any transient refusal means the message may still get through: retry.
        return next((o for o in outcomes if o.status is Status.RETRY), outcomes[0])
    if isinstance(exc, SMTPResponseException):
        not_recipient = (SMTPSenderRefused, SMTPHeloError, SMTPAuthenticationError, SMTPConnectResponseError)
        return classify(exc.code, exc.message, about_recipient=not isinstance(exc, not_recipient))
    if isinstance(exc, TimeoutError):  # SMTPTimeoutError and its connect/read variants, asyncio's
        return Outcome.retry("timeout")
    if isinstance(exc, OSError):  # SMTPServerDisconnected, SMTPConnectError, TLS errors
        return Outcome.retry("connection_error", detail=type(exc).__name__)
    if isinstance(exc, SMTPException):  # e.g. STARTTLS or AUTH not offered: maybe a server mid-deploy
        return Outcome.retry("smtp_error", detail=_scrub(exc.message))
    return Outcome.retry("connection_error", detail=type(exc).__name__)


# --- the adapter ----------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Connection:
    smtp: SMTP
    transport: asyncio.BaseTransport | None  # kept: aiosmtplib forgets it as soon as it closes
    sends: int = 0
    idle_since: float = 0.0

    def discard(self) -> None:
        """Close at once. A graceful TLS close (aiosmtplib's) waits for the server's close_notify in
        the background, and a loop that stops before that leaks the socket; a dead or desynchronised
        session needs no goodbye."""
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.abort()
        self.smtp.close()


class _StaleConnectionError(Exception):
    """A reused connection turned out closed before the server saw anything of this message."""


class _Pool:
    """At most ``size`` connections, each lent to one send at a time; idle ones reused newest first."""

    def __init__(self, connect: Callable[[], Awaitable[SMTP]], size: int, max_idle_s: float) -> None:
        self.slots = asyncio.Semaphore(size)
        self.opened = 0
        self._connect, self._max_idle_s = connect, max_idle_s
        self._idle: list[_Connection] = []
        self._closed = False

    async def checkout(self) -> _Connection:
        """A connected connection (caller holds a slot): an idle one, or a new one."""
        while self._idle:
            conn = self._idle.pop()
            # Past max_idle_s the server may be about to drop it (servers close idle sessions after
            # a few minutes): a new connection costs less than racing that close.
            if conn.smtp.is_connected and time.monotonic() - conn.idle_since < self._max_idle_s:
                return conn
            conn.discard()
        if self._closed:
            raise SMTPServerDisconnected("the e-mail adapter is closed")
        smtp = await self._connect()
        self.opened += 1
        return _Connection(smtp, smtp.transport)

    def checkin(self, conn: _Connection, *, reusable: bool) -> None:
        if reusable and not self._closed and conn.smtp.is_connected:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.discard()

    async def aclose(self, grace_s: float = 2.0) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(conn, grace_s) for conn in idle))
        await asyncio.sleep(0)  # let the aborted transports finish closing while the loop runs


class EmailAdapter:
    """Sends e-mail through one SMTP server (a relay such as SES/Postmark/Postfix, or the sandbox).

    Mail outside the transactional categories carries RFC 8058 one-click unsubscribe headers whose
    URL is ``{public_base_url}/t/unsubscribe/<token>``, the token signed by ``signer`` for the delivery.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        public_base_url: str,
        signer: TrackingSigner,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool = False,
        ca_file: str | Path | None = None,
        pool_size: int = 4,
        timeout_s: float = 15.0,
        transactional_categories: Iterable[str] = DEFAULT_TRANSACTIONAL,
        local_hostname: str | None = None,
        max_idle_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if pool_size < 1 or timeout_s <= 0:
            raise ConfigError("pool_size must be at least 1 and timeout_s positive")
        envelope_from = parseaddr(sender)[1]
        if _has_control(sender) or not _is_address(envelope_from):
            raise ConfigError(f"NOTIFY_EMAIL_FROM is not a valid From address: {sender!r}")
        if not re.fullmatch(r"https?://[^\s<>,\"]+", public_base_url):
            raise ConfigError("NOTIFY_PUBLIC_BASE_URL must be an http(s) URL")
        if username is not None and not start_tls and not _is_loopback(host):
            raise ConfigError("refusing to send SMTP credentials without STARTTLS to a remote server")
        self._host, self._port, self._sender = host, port, sender
        self._envelope_from = envelope_from
        self._domain = envelope_from.rpartition("@")[2]
        self._public_base_url, self._signer = public_base_url, signer
        self._username, self._password, self._start_tls = username, password, start_tls
        self._tls: ssl.SSLContext | None = None
        if start_tls:
            self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
            self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._pool_size, self._timeout_s, self._max_idle_s = pool_size, timeout_s, max_idle_s
        self._transactional = frozenset(transactional_categories)
        self._local_hostname = local_hostname
        self._clock = clock
        self._pool: _Pool | None = None  # made on first send: its semaphore binds to that loop

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> EmailAdapter:
        """``kwargs``: transactional_categories, local_hostname, max_idle_s, clock; ``ca_file`` overrides."""
        kwargs.setdefault("ca_file", settings.smtp_ca_file)
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.email_from,
            public_base_url=settings.public_base_url,
            signer=TrackingSigner.from_settings(settings),
            username=settings.smtp_username,
            password=password,
            start_tls=settings.smtp_start_tls,
            pool_size=settings.smtp_pool_size,
            timeout_s=settings.smtp_timeout_s,
            **kwargs,
        )

    @property
    def connections_opened(self) -> int:
        """Connections this adapter opened so far (since the last ``close``)."""
        return self._pool.opened if self._pool is not None else 0

    async def send(self, message: Mapping[str, Any]) -> Outcome:
        """Deliver one channel message (delivery_id, user_id, category, target, email_*, expires_at)."""
        if _expired(message.get("expires_at"), self._clock()):
            return Outcome.permanent("expired", detail="expires_at passed before the send")
        try:
            mail = build_message(
                message,
                sender=self._sender,
                unsubscribe_url=self._unsubscribe_url(message),
                domain=self._domain,
                transactional=self._transactional,
            )
        except InvalidEmail as exc:
            return Outcome.permanent(exc.reason, deactivate_target=exc.deactivate_target, detail=exc.detail)
        message_id = str(mail["Message-ID"])
        progress = _Progress()
        try:
            await self._transmit(mail.as_bytes(), str(message["target"]), progress)
        except _SEND_ERRORS as exc:
            outcome = classify_exception(exc)
            if progress.stage == "data" and outcome.reason in ("timeout", "connection_error"):
                note = "no reply after the message data was sent: it may have been delivered"
                outcome = dataclasses.replace(outcome, detail=f"{outcome.detail or outcome.reason}; {note}")
            return outcome
        return Outcome.sent(message_id)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

    def _unsubscribe_url(self, message: Mapping[str, Any]) -> str | None:
        category = str(message.get("category") or "")
        if category in self._transactional:
            return None
        delivery = TrackedDelivery(
            delivery_id=str(message.get("delivery_id") or ""),
            notification_id=str(message.get("notification_id") or ""),
            user_id=str(message.get("user_id") or ""),
            service=str(message.get("service") or ""),
            channel=Channel.EMAIL,  # this worker's channel, whatever the record claims
            category=category,
        )
        try:
            token = self._signer.sign(Purpose.UNSUBSCRIBE, delivery)
        except ValueError as exc:  # identifiers too long for a token: no working link to offer
            raise InvalidEmail("invalid_unsubscribe_url", "the unsubscribe token would be too long") from exc
        return unsubscribe_url(self._public_base_url, token)

    async def _transmit(self, data: bytes, recipient: str, progress: _Progress) -> None:
        pool = self._connections()
        async with pool.slots, asyncio.timeout(self._timeout_s):
            for attempt in range(2):
                progress.stage = "connect"
                conn = await pool.checkout()
                reusable = False
                try:
                    await self._transaction(conn, data, recipient, progress, stale_ok=attempt == 0)
                    reusable = True
                    return
                except _StaleConnectionError:
                    continue
                except SMTPResponseException:
                    # A refusal is an answer: the session is fine once the envelope is reset.
                    reusable = await _reset(conn.smtp)
                    raise
                finally:
                    pool.checkin(conn, reusable=reusable)

    async def _transaction(
        self, conn: _Connection, data: bytes, recipient: str, progress: _Progress, *, stale_ok: bool
    ) -> None:
        smtp, reused = conn.smtp, conn.sends > 0
        conn.sends += 1
        progress.stage = "mail"
        options = [f"SIZE={len(data)}"] if smtp.supports_extension("size") else []
        try:
            await smtp.mail(self._envelope_from, options=options)
        except (SMTPServerDisconnected, SMTPResponseException) as exc:
            closing = isinstance(exc, SMTPServerDisconnected) or exc.code == 421
            if stale_ok and reused and closing:
                raise _StaleConnectionError from exc
            raise
        progress.stage = "rcpt"
        await smtp.rcpt(recipient)
        progress.stage = "data"
        await smtp.data(data)

    async def _connect(self) -> SMTP:
        if self._local_hostname is None:
            # aiosmtplib would resolve it again for every connection, in a thread.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        smtp = SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            local_hostname=self._local_hostname,
            timeout=self._timeout_s,
            start_tls=self._start_tls,  # never None: no silent downgrade, no surprise upgrade
            tls_context=self._tls,
        )
        await smtp.connect()
        return smtp

    def _connections(self) -> _Pool:
        if self._pool is None:
            self._pool = _Pool(self._connect, self._pool_size, self._max_idle_s)
        return self._pool


@dataclasses.dataclass
class _Progress:
    stage: str = "connect"


async def _reset(smtp: SMTP) -> bool:
    """RSET after a refusal; True when the connection is fit for the next message."""
    if not smtp.is_connected:  # aiosmtplib closes on 421 itself
        return False
    try:
        await smtp.rset()
    except _SEND_ERRORS:
        return False
    return smtp.is_connected


async def _quit(conn: _Connection, grace_s: float) -> None:
    with contextlib.suppress(*_SEND_ERRORS):
        await asyncio.wait_for(conn.smtp.quit(), grace_s)
    conn.discard()


# --- message rendering ----------------------------------------------------------------------------

if TYPE_CHECKING:
    _PolicyBase = EmailPolicy[EmailMessage]
else:
    _PolicyBase = EmailPolicy


class _Policy(_PolicyBase):
    """SMTP policy (CRLF, 7-bit) that folds Subject and the RFC 8058 headers itself (see module doc)."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        # Keep these as the caller's text: the header registry would decode a literal "=?...?="
        # in a subject (or URL) as if it were an encoded word. Callers validated them already.
        if isinstance(value, str) and name.lower() in _SELF_FOLDED:
            return name, value
        return super().header_store_parse(name, value)

    def fold(self, name: str, value: str) -> str:
        raw = _fold_special(name, str(value), self.linesep)
        return raw if raw is not None else str(super().fold(name, value))

    def fold_binary(self, name: str, value: str) -> bytes:
        raw = _fold_special(name, str(value), self.linesep)
        return raw.encode("ascii") if raw is not None else super().fold_binary(name, value)


_POLICY = _Policy(linesep="\r\n", cte_type="7bit")


_SELF_FOLDED = frozenset({"subject", "list-unsubscribe", "list-unsubscribe-post"})


def _fold_special(name: str, value: str, linesep: str) -> str | None:
    key = name.lower()
    if key in ("list-unsubscribe", "list-unsubscribe-post"):
        return f"{name}: {value}{linesep}"  # validated ASCII without whitespace, under 998 octets
    if key != "subject":
        return None
    words = value.split(" ")
    if value.isascii() and "=?" not in value and all(len(w) <= _LINE - len("Subject: ") for w in words):
        lines, line = [], f"{name}:"
        for word in words:
            # Fold before a space (kept when unfolded), never before an empty word, so no
            # continuation line is whitespace only (RFC 5322 3.2.2).
            if word and line != f"{name}:" and len(line) + 1 + len(word) > _LINE:
                lines.append(line)
                line = ""
            line += f" {word}"
        return linesep.join([*lines, line]) + linesep
    # Non-ASCII, or words too long to fold: RFC 2047 words, each whole and self-contained.
    encoded = Header(value, "utf-8", maxlinelen=_LINE, header_name=name).encode(linesep=linesep)
    return f"{name}: {encoded}{linesep}"


def _has_control(value: str) -> bool:
    """CR, LF and every other control, line/paragraph separator or lone surrogate: refused in headers."""
    return any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value)


def _is_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return (
        bool(at and len(local) <= 64 and _LOCAL_PART.fullmatch(local) and _DOMAIN.fullmatch(domain))
        and address.isascii()
    )


def _check_address(target: str) -> None:
    if _has_control(target):
        raise InvalidEmail(
            "header_injection",
            "the address contains a line break or control character",
            deactivate_target=True,
        )
    if not target.isascii() and "@" in target:
        # An internationalised address needs SMTPUTF8 end to end; not supported (yet), not dead either.
        raise InvalidEmail("unsupported_address", "non-ASCII addresses (SMTPUTF8) are not supported")
    if not _is_address(target):
        raise InvalidEmail("invalid_address", "the address is not a valid addr-spec", deactivate_target=True)


def _check_url(url: str) -> None:
    if len(url) > _MAX_URL or not re.fullmatch(r"https?://[!#-;=?-~]+", url):
        raise InvalidEmail("invalid_unsubscribe_url", "the unsubscribe URL is not a short http(s) URL")


def _as_utc(value: Any) -> dt.datetime:
    """``created_at`` as an aware datetime (fastavro gives one; epoch ms is accepted; None = now)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return dt.datetime.now(dt.UTC)


def _expired(expires_at: Any, now: float) -> bool:
    if expires_at is None:
        return False
    return _as_utc(expires_at).timestamp() <= now


def _mailbox_gone(code: int, text: str) -> bool:
    enhanced = _ENHANCED.match(text)
    if enhanced is not None:
        return ".".join(enhanced.groups()) in _MAILBOX_GONE
    return code in _DEACTIVATING_CODES and _UNKNOWN_MAILBOX.search(text) is not None


def _scrub(text: str) -> str:
    """Reply text without addresses (personal data) and at most one short line."""
    return " ".join(_ADDRESS_IN_TEXT.sub("<address>", text).split())[:300]


def _detail(code: int, text: str) -> str:
    return f"SMTP {code} {_scrub(text)}".rstrip()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

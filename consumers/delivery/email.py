"""E-mail channel adapter: one decoded channel message in, one ``Outcome`` out, over SMTP (aiosmtplib 5.1).

Contract: ``await EmailAdapter(...).send(message)`` never raises for provider or transport trouble; it
returns ``classify(...)`` of the server's reply, or a retryable ``timeout`` / ``connection_error``.
Every send (connect, STARTTLS, AUTH and the mail transaction) is bounded by ``timeout_s``; waiting
for a free pool connection is not, because every holder of one is. The ``Message-ID`` is
``message_id_for(delivery_id, domain)``, so a retried delivery carries the same id: receivers and
our own bounce handling can recognise a duplicate. ``send`` returns ``Outcome.sent(<Message-ID>)``.

This module owns the adapter and the mail transaction. The message itself is built by
``consumers.delivery.email_message`` (pure), replies become ``Outcome``s in
``consumers.delivery.email_reply`` (pure; their public names are re-exported here), and the
connections come from the pool in ``consumers.delivery.email_pool``.

Design notes (aiosmtplib 5.1.3, read in its source):

- A bounded pool of ``pool_size`` connections, each used by one send at a time (aiosmtplib serialises
  a connection anyway), reused newest first so light traffic keeps one warm connection. A connection
  that failed mid-command, timed out or lost its server is closed and replaced on the next send.
- The transaction is MAIL, RCPT, DATA, issued here rather than by ``send_message`` so we know how
  far it got: a reused connection that the server closed while idle fails at MAIL (EOF, or 421
  "closing"), before any of the message reached the server, so the send moves to a fresh connection
  at once instead of reporting a retry. A failure after DATA is ambiguous (the message may have been
  queued); the retry it gives says so.
- After a refusal (4xx/5xx) the transaction is reset with RSET and the connection stays in the pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from aiosmtplib import SMTP, SMTPResponseException, SMTPServerDisconnected

from consumers.delivery.email_message import (
    DEFAULT_TRANSACTIONAL,
    InvalidEmail,
    as_utc,
    build_message,
    message_id_for,
    valid_sender,
)
from consumers.delivery.email_pool import SEND_ERRORS, Connection, Pool
from consumers.delivery.email_reply import classify, classify_exception
from consumers.delivery.outcome import Outcome
from notify_core.exceptions import ConfigError
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.tracing import provider_call
from notify_core.tracking import Purpose, TrackedDelivery, TrackingSigner, unsubscribe_url

__all__ = [
    "DEFAULT_TRANSACTIONAL",
    "EmailAdapter",
    "InvalidEmail",
    "build_message",
    "classify",
    "classify_exception",
    "message_id_for",
]


class _StaleConnectionError(Exception):
    """A reused connection turned out closed before the server saw anything of this message."""


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
        if not valid_sender(sender):
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
        self._pool: Pool | None = None  # made on first send: its semaphore binds to that loop

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
        message_id = mail.message_id
        progress = _Progress()
        try:
            with provider_call(
                "smtp send",
                server_address=self._host,
                server_port=self._port,
                attributes={"network.protocol.name": "smtp"},
            ):
                await self._transmit(mail.data, str(message["target"]), progress)
        except SEND_ERRORS as exc:
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
        self, conn: Connection, data: bytes, recipient: str, progress: _Progress, *, stale_ok: bool
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

    def _connections(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(self._connect, self._pool_size, self._max_idle_s)
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
    except SEND_ERRORS:
        return False
    return smtp.is_connected


def _expired(expires_at: Any, now: float) -> bool:
    if expires_at is None:
        return False
    return as_utc(expires_at).timestamp() <= now


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

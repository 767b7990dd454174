"""A bounded pool of SMTP connections (aiosmtplib 5.1), each lent to one send at a time.

At most ``size`` connections are open; idle ones are reused newest first, so light traffic keeps one
warm connection, and one idle past ``max_idle_s`` (or no longer connected) is closed rather than
raced against the server's own idle timeout. A connection that cannot be reused is closed at once
(``Connection.discard``), not with a graceful TLS goodbye. ``EmailAdapter`` in
``consumers.delivery.email`` owns the pool and the mail transaction run over its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable

from aiosmtplib import SMTP, SMTPException, SMTPServerDisconnected

SEND_ERRORS = (SMTPException, OSError, TimeoutError)


@dataclasses.dataclass(eq=False)
class Connection:
    """One pooled SMTP session, with what the pool tracks about it."""

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


class Pool:
    """At most ``size`` connections, each lent to one send at a time; idle ones reused newest first."""

    def __init__(self, connect: Callable[[], Awaitable[SMTP]], size: int, max_idle_s: float) -> None:
        self.slots = asyncio.Semaphore(size)
        self.opened = 0
        self._connect, self._max_idle_s = connect, max_idle_s
        self._idle: list[Connection] = []
        self._closed = False

    async def checkout(self) -> Connection:
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
        return Connection(smtp, smtp.transport)

    def checkin(self, conn: Connection, *, reusable: bool) -> None:
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


async def _quit(conn: Connection, grace_s: float) -> None:
    with contextlib.suppress(*SEND_ERRORS):
        await asyncio.wait_for(conn.smtp.quit(), grace_s)
    conn.discard()

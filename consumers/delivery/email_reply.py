"""The ``Outcome`` of an SMTP reply or of an aiosmtplib (or transport) exception, as pure functions.

``classify`` turns a reply into an ``Outcome``; it deactivates the address only when the reply
says the mailbox does not exist (enhanced status 5.1.x/5.2.1, or such words without one), never
for a policy refusal such as "550 5.7.1 rejected as spam". Reply text reaches ``Outcome.detail``
with e-mail addresses removed. ``classify_exception`` does the same for an exception raised by
aiosmtplib 5.1 or the transport under it.
"""

from __future__ import annotations

import re

from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectResponseError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
)

from consumers.delivery.outcome import Outcome, Status

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

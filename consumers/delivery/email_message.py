"""The e-mail for one channel message: MIME parts, headers and their folding, as a pure function.

``build_message(...)`` turns a decoded channel message into an ``EmailMessage`` ready for SMTP, or
raises ``InvalidEmail`` for anything unsafe to send (header injection, a bad address, a missing
subject or body). It does no I/O, so a retry renders byte-identical mail: the ``Message-ID`` is
``message_id_for(delivery_id, domain)`` and Date is the delivery's ``created_at``.

Rendering notes (CPython 3.11 ``email``, read in its source):

- The message is rendered 7-bit clean (quoted-printable/base64 parts, RFC 2047 subject), so neither
  8BITMIME nor SMTPUTF8 is needed. Two headers are folded here, not by the ``email`` package:
  CPython 3.11 drops the space between adjacent encoded words when folding a long non-ASCII subject
  (about 7% of long ones, measured), and it RFC 2047-encodes a List-Unsubscribe URL longer than a
  line, which receivers do not decode (RFC 2369 headers hold raw ``<URI>``s).
- Categories outside the transactional ones get RFC 8058 one-click unsubscribe headers
  (``List-Unsubscribe`` and ``List-Unsubscribe-Post``) when an unsubscribe URL is given.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from email.header import Header
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Any

from notify_core.exceptions import NotifyError

DEFAULT_TRANSACTIONAL: frozenset[str] = frozenset({"account", "security"})

_MESSAGE_ID_NAMESPACE = uuid.UUID("3b0c9d52-7f3e-4c8a-b1a4-2e6f5d9c8a70")
_MAX_SUBJECT = 998  # RFC 5322 line limit: longer is a rendering bug, not something to fold
_MAX_URL = 900  # List-Unsubscribe is written on one line, which must stay under 998 octets
_LINE = 78  # RFC 5322 recommended line length
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}$")


class InvalidEmail(NotifyError, ValueError):
    """A channel message that cannot become a safe e-mail; ``send`` reports it as permanent."""

    def __init__(self, reason: str, detail: str, *, deactivate_target: bool = False) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.deactivate_target = reason, detail, deactivate_target


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
    if has_control(sender) or not is_address(parseaddr(sender)[1]):
        raise InvalidEmail("invalid_sender", "the From header is not a single valid address")
    subject = message.get("email_subject")
    if subject is None:
        raise InvalidEmail("missing_subject", "the channel message has no email_subject")
    if has_control(str(subject)):
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
    mail["Date"] = format_datetime(as_utc(message.get("created_at")))
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


def has_control(value: str) -> bool:
    """CR, LF and every other control, line/paragraph separator or lone surrogate: refused in headers."""
    return any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value)


def is_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return (
        bool(at and len(local) <= 64 and _LOCAL_PART.fullmatch(local) and _DOMAIN.fullmatch(domain))
        and address.isascii()
    )


def _check_address(target: str) -> None:
    if has_control(target):
        raise InvalidEmail(
            "header_injection",
            "the address contains a line break or control character",
            deactivate_target=True,
        )
    if not target.isascii() and "@" in target:
        # An internationalised address needs SMTPUTF8 end to end; not supported (yet), not dead either.
        raise InvalidEmail("unsupported_address", "non-ASCII addresses (SMTPUTF8) are not supported")
    if not is_address(target):
        raise InvalidEmail("invalid_address", "the address is not a valid addr-spec", deactivate_target=True)


def _check_url(url: str) -> None:
    if len(url) > _MAX_URL or not re.fullmatch(r"https?://[!#-;=?-~]+", url):
        raise InvalidEmail("invalid_unsubscribe_url", "the unsubscribe URL is not a short http(s) URL")


def as_utc(value: Any) -> dt.datetime:
    """``created_at`` as an aware datetime (fastavro gives one; epoch ms is accepted; None = now)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return dt.datetime.now(dt.UTC)

"""The e-mail for one channel message: its checks, headers and their folding, as a pure function.

``build_message(...)`` turns a decoded channel message into a ``Mail`` (its Message-ID and the bytes
to send; the MIME structure is written by ``consumers.delivery.email_mime``), or raises
``InvalidEmail`` for anything unsafe to send (header injection, a bad address, a missing subject or
body). It does no I/O, so a retry renders byte-identical mail: the ``Message-ID`` is
``message_id_for(delivery_id, domain)``, Date is the delivery's ``created_at`` and the boundary
follows from the Message-ID.

Rendering notes (CPython 3.11 ``email``, read in its source):

- The message is rendered 7-bit clean (quoted-printable/base64 parts, RFC 2047 subject), so neither
  8BITMIME nor SMTPUTF8 is needed. Only From goes through the ``email`` package's header folding
  (once per sender). Subject and the RFC 8058 headers are folded here:
  CPython 3.11 drops the space between adjacent encoded words when folding a long non-ASCII subject
  (about 7% of long ones, measured), and it RFC 2047-encodes a List-Unsubscribe URL longer than a
  line, which receivers do not decode (RFC 2369 headers hold raw ``<URI>``s).
- Categories outside the transactional ones get RFC 8058 one-click unsubscribe headers
  (``List-Unsubscribe`` and ``List-Unsubscribe-Post``) when an unsubscribe URL is given.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import functools
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.header import Header
from email.utils import format_datetime, parseaddr
from typing import Any

from consumers.delivery.email_mime import LINE, render
from notify_core.exceptions import NotifyError

DEFAULT_TRANSACTIONAL: frozenset[str] = frozenset({"account", "security"})

_MESSAGE_ID_NAMESPACE = uuid.UUID("3b0c9d52-7f3e-4c8a-b1a4-2e6f5d9c8a70")
_MAX_SUBJECT = 998  # RFC 5322 line limit: longer is a rendering bug, not something to fold
_MAX_URL = 900  # List-Unsubscribe is written on one line, which must stay under 998 octets
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
) -> Mail:
    """The e-mail for one channel message (raises ``InvalidEmail`` for anything unsafe to send).

    ``sender`` is the From header (``"Name <addr>"``); ``domain`` names the Message-ID's right-hand
    side. Categories outside ``transactional`` get RFC 8058 one-click unsubscribe headers when an
    ``unsubscribe_url`` is given. Date is the delivery's ``created_at``, so a retry is byte-identical.
    """
    target = str(message.get("target") or "")
    _check_address(target)
    if not valid_sender(sender):
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

    headers = [
        _fold_subject(str(subject)),
        _folded_from(sender),
        f"To: {target}\r\n".encode("ascii"),  # a checked ASCII addr-spec: at most 322 octets
        f"Date: {format_datetime(as_utc(message.get('created_at')))}\r\n".encode("ascii"),
    ]
    message_id = message_id_for(str(message["delivery_id"]), domain)
    headers.append(f"Message-ID: {message_id}\r\n".encode("ascii"))
    category = str(message.get("category") or "")
    if unsubscribe_url is not None and category not in frozenset(transactional):
        _check_url(unsubscribe_url)
        # RFC 2369 headers hold a raw <URI>: one line (checked short), never folded or encoded.
        headers.append(f"List-Unsubscribe: <{unsubscribe_url}>\r\n".encode("ascii"))
        headers.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    data = render(headers, str(text) if text else None, str(html) if html else None, seed=message_id)
    return Mail(message_id, data)


@dataclass(frozen=True)
class Mail:
    """One rendered e-mail: its Message-ID, and the 7-bit CRLF bytes to send after DATA."""

    message_id: str
    data: bytes


@functools.lru_cache(maxsize=16)
def valid_sender(sender: str) -> bool:
    """A From header naming one valid address, with no control character (checked once per sender)."""
    return not has_control(sender) and is_address(parseaddr(sender)[1])


@functools.lru_cache(maxsize=16)
def _folded_from(sender: str) -> bytes:
    """The From line as the ``email`` package folds it (RFC 2047 for a non-ASCII display name).

    One sender per adapter, so the header parser runs once, not once a message."""
    return _HEADERS.fold_binary("From", _HEADERS.header_factory("From", sender))


_HEADERS = email.policy.SMTP.clone(cte_type="7bit")


def _fold_subject(value: str) -> bytes:
    """The Subject line, folded here: CPython 3.11 drops the space between adjacent encoded words
    when folding a long non-ASCII subject (about 7% of long ones, measured), and would decode a
    literal "=?...?=" in the caller's text as if it were an encoded word."""
    name = "Subject"
    words = value.split(" ")
    plain = value.isascii() and "=?" not in value and value == value.strip(" ")  # edge blanks: see below
    if plain and all(len(w) <= LINE - len("Subject: ") for w in words):
        lines, line = [], f"{name}:"
        for word in words:
            # Fold before a space (kept when unfolded), never before an empty word, so no
            # continuation line is whitespace only (RFC 5322 3.2.2).
            if word and line != f"{name}:" and len(line) + 1 + len(word) > LINE:
                lines.append(line)
                line = ""
            line += f" {word}"
        return ("\r\n".join([*lines, line]) + "\r\n").encode("ascii")
    # Non-ASCII, words too long to fold, or leading/trailing blanks (a receiver strips those from a
    # plain header): RFC 2047 words, each whole and self-contained.
    encoded = Header(value, "utf-8", maxlinelen=LINE, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def has_control(value: str) -> bool:
    """CR, LF and every other control, line/paragraph separator or lone surrogate: refused in headers."""
    if value.isascii():  # the usual case, without a lookup per character
        return _ASCII_CONTROL.search(value) is not None
    return any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value)


_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # the Cc characters of ASCII


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

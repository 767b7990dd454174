"""MIME bytes for one e-mail, written directly: the header lines, and one or two text parts.

``email.message.EmailMessage`` parses every header it is given into a token tree and folds it back
out, and ``set_content`` does the same for each part's Content-Type: 1.2 ms of CPU a message
(timeit, a digest with both parts), half of the e-mail worker's loop under ``notify bench delivery``. Our
mail has one fixed shape, so it is written here as bytes, with the same encodings the ``email``
package would choose:

- a body part is 7bit when it is printable ASCII in lines of at most 78 octets, otherwise
  quoted-printable, or base64 when that is shorter (mostly non-Latin scripts);
- lines end in CRLF (``bytes.splitlines``: CR, LF and CRLF are line breaks, as for ``email``);
- the multipart boundary is derived from the delivery, so a retry is byte-identical, and starts with
  ``=_``, which neither quoted-printable nor base64 can produce; a 7bit part that happens to contain
  it gets another one.

Callers validate the header values first (``consumers.delivery.email_message``); each header line
given here is already folded and ends in CRLF. A receiver's parse of the output is checked against
the input by the property tests in ``tests/unit/test_email_mime.py``.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence

LINE = 78  # RFC 5322's recommended limit: a longer 7bit line is sent quoted-printable instead
_NOT_7BIT = re.compile(rb"[^\t\n\r\x20-\x7e]")  # line breaks are the lines' own ends
_CRLF = b"\r\n"
_BOUNDARY_NAMESPACE = uuid.UUID("9a4f6c1e-2b7d-4e5a-8c3f-0d1e2f3a4b5c")


def render(headers: Sequence[bytes], text: str | None, html: str | None, *, seed: str) -> bytes:
    """The whole message: ``headers`` (folded lines, CRLF-terminated), then MIME headers and body.

    Both bodies give ``multipart/alternative`` (plain first: the last part is the preferred one);
    one gives a single part. ``seed`` (the delivery id) makes the boundary, so retries are equal.
    """
    if not (text or html):
        raise ValueError("an e-mail needs a text or an HTML body")  # callers check first
    head = b"".join(headers) + b"MIME-Version: 1.0\r\n"
    if text and html:
        parts = [_part("plain", text), _part("html", html)]
        boundary = _boundary(seed, parts)
        delimiter = b"--" + boundary
        out = [head, b'Content-Type: multipart/alternative;\r\n boundary="', boundary, b'"\r\n\r\n']
        for index, part in enumerate(parts):
            out += [_CRLF if index else b"", delimiter, _CRLF, part]
        out += [_CRLF, delimiter, b"--", _CRLF]
        return b"".join(out)
    subtype, body = ("plain", text) if text else ("html", html or "")
    return head + _part(subtype, body)


def _part(subtype: str, content: str) -> bytes:
    """One text part: its Content-Type and Content-Transfer-Encoding lines, a blank line, the body."""
    raw = content.encode("utf-8")
    lines = raw.splitlines()
    charset = "us-ascii" if raw.isascii() else "utf-8"
    if _NOT_7BIT.search(raw) is None and all(len(line) <= LINE for line in lines):
        cte, body = "7bit", _CRLF.join(lines) + _CRLF
    else:
        cte, body = _encoded(b"\n".join(lines) + b"\n")
    header = f'Content-Type: text/{subtype}; charset="{charset}"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    return header.encode("ascii") + body


def _encoded(data: bytes) -> tuple[str, bytes]:
    """Quoted-printable, or base64 when shorter; LF line breaks in ``data``, CRLF in the result."""
    qp = binascii.b2a_qp(data, istext=True)
    b64_size = (len(data) + 2) // 3 * 4 + (len(data) + 56) // 57  # encodebytes: 57 octets a line
    if b64_size < len(qp):
        return "base64", base64.encodebytes(data).replace(b"\n", _CRLF)
    return "quoted-printable", qp.replace(b"\n", _CRLF)


def _boundary(seed: str, parts: Sequence[bytes]) -> bytes:
    """``=_`` and a name from ``seed``: never inside an encoded part, and checked against 7bit ones."""
    for attempt in range(100):
        boundary = f"=_{uuid.uuid5(_BOUNDARY_NAMESPACE, f'{seed}/{attempt}').hex}".encode("ascii")
        if not any(boundary in part for part in parts):
            return boundary
    raise AssertionError("no boundary outside the parts")  # 100 uuids inside one text: not plausible

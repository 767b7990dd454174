"""Engagement tracking written into one delivery's channel message (pure, no I/O).

Each delivery gets its own tokens (``notify_core.tracking``), so this runs per target, after the
channel's shared render:

- E-mail HTML: every ``<a href="http(s)://...">`` points at ``{base}/t/click/<token>``, the token
  carrying that exact URL (entities decoded); a 1x1 open pixel ``{base}/t/open/<token>`` goes before
  ``</body>`` (or at the end). Left as they are: ``mailto:``, ``tel:``, ``#anchors``, relative
  links, links already under ``{base}/t/`` (ours, the unsubscribe link among them), and links whose
  path or query names ``unsubscribe``: an unsubscribe must never depend on our redirect, and is no
  click. Links inside ``<!-- comments -->`` (Outlook's conditional blocks) stay untouched too.
  The plain-text part is left as it is: rewritten links there would be long and visibly opaque.
- Push (ios, android): ``data["notify_tracking"]`` is a push-open token the app reports back.
- SMS: nothing.

Tracking never fails a delivery: a click URL too long for a token stays as it was, and a push token
or an HTML rewrite that would take the content over its size limit is left out. At most
``MAX_TRACKED_URLS`` distinct URLs are signed per mail.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from html import escape, unescape
from typing import Any
from urllib.parse import urlsplit

from consumers.router.policy import PUSH
from notify_core.topics import Channel
from notify_core.tracking import (
    Purpose,
    TrackedDelivery,
    TrackingSigner,
    click_url,
    is_redirectable,
    open_pixel_url,
)

TRACKING_KEY = "notify_tracking"
# Distinct URLs signed per mail (about 60 us each); links to any further ones stay direct, so a
# template with thousands of links cannot slow the router down.
MAX_TRACKED_URLS = 200

# One pass over the HTML finds comments and start tags (every tag, so that an "<a" inside another
# tag's attribute value is never taken for a link). Attributes follow HTML's tokenizer: a name, then
# optionally "=" and a double-, single- or unquoted value. Possessive quantifiers and a tail that
# always matches (an unclosed tag runs to the end of input) keep the scan linear on any input: no
# backtracking, and no rescanning from each "<" of an unclosed tag.
_ATTR = r"""[^\s/>][^\s/>=]*+(?:\s*+=\s*+(?:"[^"]*+"|'[^']*+'|[^\s>]*+))?+"""
_SCAN = re.compile(rf"<!--(?:.*?-->|.*+)|<(?P<tag>[a-z][^\s/>]*+)(?:[\s/]++|{_ATTR})*+(?:>|\Z)", re.I | re.S)
_TOKENS = re.compile(
    r"""[\s/]++|(?P<name>[^\s/>][^\s/>=]*+)(?:\s*+=\s*+(?P<value>"[^"]*+"|'[^']*+'|[^\s>]*+))?+"""
)
_HTTP = re.compile(r"https?://", re.I)
_BODY_END = re.compile(r"</body\s*>", re.I)
_URL_SPACE = " \t\n\r\f"  # what browsers strip around a URL attribute


def with_tracking(
    record: Mapping[str, Any],
    channel: Channel,
    signer: TrackingSigner,
    *,
    max_push_bytes: int,
    max_html_chars: int,
) -> dict[str, Any]:
    """A copy of the channel-message ``record`` with its tracking written in (see the module doc)."""
    tracked = dict(record)
    delivery = TrackedDelivery(
        delivery_id=str(record["delivery_id"]),
        notification_id=str(record["notification_id"]),
        user_id=str(record["user_id"]),
        service=str(record["service"]),
        channel=channel,
        category=str(record["category"]),
    )
    if channel is Channel.EMAIL and record.get("email_html"):
        tracked["email_html"] = track_email_html(
            str(record["email_html"]), delivery, signer, max_chars=max_html_chars
        )
    elif channel in PUSH:
        tracked["data"] = track_push_data(
            record.get("data") or {},
            delivery,
            signer,
            title=record.get("title"),
            body=record.get("body"),
            max_bytes=max_push_bytes,
        )
    return tracked


def track_email_html(
    html: str, delivery: TrackedDelivery, signer: TrackingSigner, *, max_chars: int | None = None
) -> str:
    """``html`` with its web links signed as clicks and an open pixel added.

    ``max_chars`` bounds the result: rewrites (and the pixel) that would take it past are skipped.
    """
    left = max_chars - len(html) if max_chars is not None else None  # how much more it may grow
    clicks: dict[str, str | None] = {}  # one token per distinct URL

    def spend(growth: int) -> bool:
        nonlocal left
        if left is not None and growth > left:
            return False
        left = None if left is None else left - growth
        return True

    def rewrite(match: re.Match[str]) -> str:
        tag = match.group()
        if (match.group("tag") or "").lower() != "a" or not tag.endswith(">"):
            return tag  # a comment, another element, or a tag cut off by the end of input
        if left is not None and left <= 0:
            return tag  # no room left for any rewrite
        href = _href(tag)
        if href is None:
            return tag
        start, end, raw = href
        url = unescape(raw).strip(_URL_SPACE)
        if not _trackable(url, signer.base_url):
            return tag
        if url not in clicks:
            if len(clicks) >= MAX_TRACKED_URLS:
                return tag
            clicks[url] = _click(url, delivery, signer)
        new = clicks[url]
        if new is None:
            return tag
        value = f'"{escape(new, quote=True)}"'
        if not spend(len(value) - (end - start)):
            return tag
        return tag[:start] + value + tag[end:]

    # The pixel's room is taken first: one open says more than any single click.
    pixel = _pixel(delivery, signer)
    if pixel is not None and not spend(len(pixel)):
        pixel = None
    tracked = _SCAN.sub(rewrite, html)
    if pixel is None:
        return tracked
    ends = list(_BODY_END.finditer(tracked))
    at = ends[-1].start() if ends else len(tracked)
    return tracked[:at] + pixel + tracked[at:]


def track_push_data(
    data: Mapping[str, str],
    delivery: TrackedDelivery,
    signer: TrackingSigner,
    *,
    title: str | None,
    body: str | None,
    max_bytes: int,
) -> dict[str, str]:
    """``data`` plus ``notify_tracking``, a push-open token, unless that takes the push over ``max_bytes``."""
    try:
        tracked = {**data, TRACKING_KEY: signer.sign(Purpose.PUSH_OPEN, delivery)}
    except ValueError:  # identifiers too long for a token
        return dict(data)
    return tracked if push_size(title, body, tracked) <= max_bytes else dict(data)


def push_size(title: str | None, body: str | None, data: Mapping[str, str]) -> int:
    """Bytes of the push payload, measured as render.py's ``_push`` builds it.

    With json's default ", " and ": " separators, as the APNs worker counts (aioapns sends it so);
    FCM counts compact JSON, which is smaller, so the stricter count keeps both providers happy.
    """
    payload = {"aps": {"alert": {"title": title, "body": body}}, **data}
    return len(json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _pixel(delivery: TrackedDelivery, signer: TrackingSigner) -> str | None:
    try:
        token = signer.sign(Purpose.OPEN, delivery)
    except ValueError:  # identifiers too long for a token: no pixel
        return None
    src = escape(open_pixel_url(signer.base_url, token), quote=True)
    return f'<img src="{src}" width="1" height="1" alt="" style="display:none">'


def _href(tag: str) -> tuple[int, int, str] | None:
    """Span of the first ``href`` attribute's value in ``tag`` (quotes included), and its raw text."""
    for token in _TOKENS.finditer(tag, 2, len(tag) - 1):  # between "<a" and ">"
        name, value = token.group("name"), token.group("value")
        if name is None or name.lower() != "href":
            continue
        if value is None:  # a bare "href": nothing to follow
            return None
        raw = value[1:-1] if value[:1] in "\"'" and len(value) > 1 and value[-1] == value[0] else value
        return token.start("value"), token.end("value"), raw
    return None


def _trackable(url: str, base_url: str) -> bool:
    if not _HTTP.match(url) or not is_redirectable(url):
        return False  # mailto:, tel:, #anchor, relative, javascript:, a port over 65535 ...
    try:
        parts, base = urlsplit(url), urlsplit(base_url)
    except ValueError:  # e.g. an unclosed "[" in the host: a browser would not follow it either
        return False
    ours = (parts.scheme.lower(), parts.netloc.lower()) == (base.scheme.lower(), base.netloc.lower())
    if ours and parts.path.startswith(f"{base.path.rstrip('/')}/t/"):
        return False
    return "unsubscribe" not in f"{parts.path}?{parts.query}".lower()


def _click(url: str, delivery: TrackedDelivery, signer: TrackingSigner) -> str | None:
    try:
        token = signer.sign(Purpose.CLICK, dataclasses.replace(delivery, url=url))
    except ValueError:  # a URL too long for a token: the link stays direct
        return None
    return click_url(signer.base_url, token)

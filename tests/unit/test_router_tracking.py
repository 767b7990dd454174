"""The router's tracking: e-mail links become signed clicks plus an open pixel, pushes carry a token."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import string
from datetime import UTC, datetime
from html import escape
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.router.batch import Lookups, Parsed, plan_batch
from consumers.router.render import Renderer
from consumers.router.tracking import (
    MAX_TRACKED_URLS,
    TRACKING_KEY,
    push_size,
    track_email_html,
    track_push_data,
    with_tracking,
)
from notify_core.codec import CHANNEL_MESSAGE
from notify_core.records import Record
from notify_core.request_model import NotificationRequest
from notify_core.topics import Channel, TopicNames
from notify_core.tracking import (
    Purpose,
    TrackedDelivery,
    TrackingSigner,
    click_url,
    open_pixel_url,
)
from notify_core.userdata.models import Contact, Device, Template, User, UserContext

BASE = "https://t.example.com"
T0 = 1_780_000_000.0
SIGNER = TrackingSigner(tracking_secrets=["t"], unsubscribe_secrets=["u"], base_url=BASE, clock=lambda: T0)
DELIVERY = TrackedDelivery(
    delivery_id="0b7e1b7a-8d6f-4a59-9d7e-2f1c3b4a5d6e",
    notification_id="6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b",
    user_id="u-1",
    service="shop",
    channel=Channel.EMAIL,
    category="marketing",
)


def click(url: str) -> str:
    """The click URL as it appears in the attribute (escaped)."""
    token = SIGNER.sign(Purpose.CLICK, dataclasses.replace(DELIVERY, url=url))
    return escape(click_url(BASE, token), quote=True)


def pixel(delivery: TrackedDelivery = DELIVERY) -> str:
    src = escape(open_pixel_url(BASE, SIGNER.sign(Purpose.OPEN, delivery)), quote=True)
    return f'<img src="{src}" width="1" height="1" alt="" style="display:none">'


def track(html: str, **kwargs: Any) -> str:
    return track_email_html(html, DELIVERY, SIGNER, **kwargs)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def start_tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def destinations(html: str) -> list[tuple[bool, str | None]]:
    """Each link's (tracked, where it leads): a tracked one's URL comes out of its verified token."""
    found: list[tuple[bool, str | None]] = []
    for tag, attrs in start_tags(html):
        href = dict(attrs).get("href") if tag == "a" else None
        if href is not None and href.startswith(f"{BASE}/t/click/"):
            delivery = SIGNER.verify(Purpose.CLICK, href.rpartition("/")[2])
            assert delivery.delivery_id == DELIVERY.delivery_id
            found.append((True, delivery.url))
        elif tag == "a":
            found.append((False, href))
    return found


# --- the rewriting, as exact strings ------------------------------------------------------------------

U = "https://example.com/a"

REWRITES: list[tuple[str, str, str]] = [
    ("double quotes", f'<a href="{U}">x</a>', f'<a href="{click(U)}">x</a>'),
    ("single quotes", f"<a href='{U}'>x</a>", f'<a href="{click(U)}">x</a>'),
    ("unquoted", f"<a href={U}>x</a>", f'<a href="{click(U)}">x</a>'),
    (
        "upper case",
        '<A HREF="HTTP://EXAMPLE.COM/A">x</A>',
        f'<A HREF="{click("HTTP://EXAMPLE.COM/A")}">x</A>',
    ),
    (
        "other attributes kept in place",
        f'<a class="btn"\n   href = "{U}" target=_blank data-x=\'1\'>x</a>',
        f'<a class="btn"\n   href = "{click(U)}" target=_blank data-x=\'1\'>x</a>',
    ),
    (
        "entities decoded before signing",
        '<a href="https://example.com/?a=1&amp;b=2&#38;c=%20">x</a>',
        f'<a href="{click("https://example.com/?a=1&b=2&c=%20")}">x</a>',
    ),
    ("spaces around the URL", f'<a href="  {U}\n">x</a>', f'<a href="{click(U)}">x</a>'),
    ("self-closing slash", f'<a href="{U}"/>', f'<a href="{click(U)}"/>'),
    (
        "only the first href counts, as in a browser",
        f'<a href="{U}" href="https://example.com/b">x</a>',
        f'<a href="{click(U)}" href="https://example.com/b">x</a>',
    ),
    (
        "a '>' inside a quoted attribute does not end the tag",
        f'<a title="a > b" href="{U}">x</a>',
        f'<a title="a > b" href="{click(U)}">x</a>',
    ),
]

UNTOUCHED = [
    '<a href="mailto:bob@example.org">mail</a>',
    '<a href="tel:+15555550100">call</a>',
    '<a href="#top">up</a>',
    '<a href="/relative/path">rel</a>',
    '<a href="//example.com/scheme-relative">rel</a>',
    '<a href="javascript:alert(1)">js</a>',
    '<a href="ftp://example.com/file">ftp</a>',
    '<a href="https://example.com/Unsubscribe?u=1">their unsubscribe</a>',
    '<a href="https://example.com/prefs?action=unsubscribe">their unsubscribe</a>',
    f'<a href="{BASE}/t/unsubscribe/a.b.c">ours</a>',
    f'<a href="{BASE}/t/click/a.b.c">already tracked</a>',
    "<a name=top>anchor</a>",
    "<a href>bare</a>",
    "<a>plain</a>",
    f'<abbr title="{U}">not a link</abbr>',
    f'<link href="{U}" rel="stylesheet">',
    f'<!-- <a href="{U}">commented out</a> -->',
    f'<!--[if mso]><a href="{U}">Outlook</a><![endif]-->',
    f"<img alt='<a href=\"{U}\">'>",  # an "<a" inside another tag's attribute is text, not a link
    f'<a title="unclosed href="{U}">x</a>',  # the href is inside title's value
]


@pytest.mark.parametrize(
    ("html", "expected"), [(h, e) for _, h, e in REWRITES], ids=[n for n, _, _ in REWRITES]
)
def test_links_are_rewritten_into_signed_clicks(html: str, expected: str) -> None:
    """Only the href value changes, always to a double-quoted, escaped click URL for that exact URL."""
    assert track(html) == expected + pixel()


@pytest.mark.parametrize("html", UNTOUCHED)
def test_links_that_are_not_web_links_or_are_unsubscribes_stay_as_they_are(html: str) -> None:
    """mailto, tel, anchors, relative links, unsubscribes, comments and non-links keep every byte."""
    assert track(html) == html + pixel()


def test_a_tag_cut_off_by_the_end_of_input_is_left_alone() -> None:
    """An <a> tag the input ends inside is not rewritten (only the pixel is added)."""
    html = f'<p>x</p><a href="{U}"'
    assert track(html) == html + pixel()


def test_quotes_and_angle_brackets_in_a_url_cannot_break_out_of_the_attribute() -> None:
    """The signed URL keeps the hostile characters; the markup gets only our escaped link."""
    hostile = [
        '<a href="https://example.com/?q=&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">x</a>',
        "<a href='https://example.com/?q=\"><script>alert(1)</script>'>x</a>",
        '<a href=\'https://example.com/?q="\' onclick="evil()">x</a>',
    ]
    for html in hostile:
        tracked = track(html)
        tags = start_tags(tracked)
        assert [t for t, _ in tags] == ["a", "img"]
        assert "<script" not in tracked.split(">x</a>")[0]
        [(is_tracked, url)] = destinations(tracked)
        assert is_tracked
        assert url is not None
        assert url.startswith('https://example.com/?q="')
    # The onclick attribute of the last one is still there, unchanged and apart from the href.
    assert dict(start_tags(track(hostile[2]))[0][1])["onclick"] == "evil()"


def test_a_hostile_base_url_is_escaped_too() -> None:
    """Even a base URL with quotes and ampersands stays inside the attribute."""
    odd = TrackingSigner(tracking_secrets=["t"], unsubscribe_secrets=["u"], base_url='https://t.example/"&<')
    tracked = track_email_html(f'<a href="{U}">x</a>', DELIVERY, odd)
    (a, a_attrs), (img, img_attrs) = start_tags(tracked)
    assert (a, img) == ("a", "img")
    href = dict(a_attrs)["href"]
    assert href is not None
    assert href.startswith('https://t.example/"&</t/click/')
    assert odd.verify(Purpose.CLICK, href.rpartition("/")[2]).url == U
    assert str(dict(img_attrs)["src"]).startswith('https://t.example/"&</t/open/')


def test_many_links_each_get_a_click_and_a_repeated_url_the_same_token() -> None:
    """Sixty links all become click links to their own URL; a URL repeated gets the same token."""
    urls = [f"https://example.com/item/{i}?ref=mail&amp;n={i}" for i in range(60)]
    html = (
        "<ul>" + "".join(f'<li><a href="{u}">{i}</a></li>' for i, u in enumerate(urls + urls[:3])) + "</ul>"
    )
    tracked = track(html)
    found = destinations(tracked)
    assert found == [(True, u.replace("&amp;", "&")) for u in urls + urls[:3]]
    hrefs = [dict(a)["href"] for t, a in start_tags(tracked) if t == "a"]
    assert hrefs[:3] == hrefs[-3:]
    assert len(set(hrefs)) == 60


def test_mixed_content_tracks_only_web_links() -> None:
    """http(s) links are tracked; mailto: and unsubscribe links stay as written."""
    html = (
        '<p><a href="https://example.com/shop">Shop</a> or <a href="mailto:help@example.com">write</a>'
        ' or <a href="https://example.com/unsubscribe/123">unsubscribe</a></p>'
    )
    assert destinations(track(html)) == [
        (True, "https://example.com/shop"),
        (False, "mailto:help@example.com"),
        (False, "https://example.com/unsubscribe/123"),
    ]


# --- the open pixel --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "where"),
    [
        ("<html><body><p>Hi</p></body></html>", "<html><body><p>Hi</p>{px}</body></html>"),
        ("<HTML><BODY><p>Hi</p></BODY >\n</HTML>", "<HTML><BODY><p>Hi</p>{px}</BODY >\n</HTML>"),
        ("<p>Hi</p>", "<p>Hi</p>{px}"),
        ("<p>a</p></body><p>b</p></body>", "<p>a</p></body><p>b</p>{px}</body>"),  # the last one
        ("", "{px}"),
    ],
)
def test_the_open_pixel_goes_before_the_closing_body_tag_or_at_the_end(html: str, where: str) -> None:
    """The pixel is placed just before </body> when there is one, else appended."""
    assert track(html) == where.format(px=pixel())


def test_the_open_pixel_token_names_the_delivery() -> None:
    """The pixel is a 1x1 hidden image whose OPEN token verifies as this delivery."""
    tracked = track("<p>Hi</p>")
    [(tag, attrs)] = [t for t in start_tags(tracked) if t[0] == "img"]
    values = dict(attrs)
    assert (tag, values["width"], values["height"], values["alt"]) == ("img", "1", "1", "")
    src = str(values["src"])
    assert src.startswith(f"{BASE}/t/open/")
    assert SIGNER.verify(Purpose.OPEN, src.rpartition("/")[2]) == DELIVERY


# --- limits: tracking never fails a delivery ---------------------------------------------------------


def test_over_the_size_budget_links_and_pixel_are_left_out() -> None:
    """Past max_chars nothing more is added: the pixel has first call, then links in order."""
    html = f'<a href="{U}">1</a><a href="https://example.com/b">2</a>'
    assert track(html, max_chars=len(html)) == html
    assert track(html, max_chars=len(html) + len(pixel())) == html + pixel()
    one = f'<a href="{click(U)}">1</a><a href="https://example.com/b">2</a>'
    assert track(html, max_chars=len(one) + len(pixel())) == one + pixel()
    both = f'<a href="{click(U)}">1</a><a href="{click("https://example.com/b")}">2</a>'
    assert track(html, max_chars=len(both) + len(pixel())) == track(html) == both + pixel()


def test_a_url_too_long_for_a_token_stays_direct() -> None:
    """A URL too long to fit in a token is left direct; the other links are still tracked."""
    # Random letters: zlib cannot shrink them back under the token's length bound.
    long_url = "https://example.com/" + "".join(random.Random(7).choices(string.ascii_letters, k=6000))
    html = f'<a href="{long_url}">long</a><a href="{U}">short</a>'
    assert track(html) == f'<a href="{long_url}">long</a><a href="{click(U)}">short</a>' + pixel()


def test_at_most_max_tracked_urls_distinct_urls_are_signed() -> None:
    """Past the cap, links to new URLs stay direct; links to URLs already signed are still tracked."""
    urls = [f"https://example.com/{i}" for i in range(MAX_TRACKED_URLS + 5)] + ["https://example.com/0"]
    found = destinations(track("".join(f'<a href="{u}">x</a>' for u in urls)))
    assert found == [(i < MAX_TRACKED_URLS or i == len(urls) - 1, u) for i, u in enumerate(urls)]


def test_pathological_markup_is_handled_in_linear_time() -> None:
    """Unclosed tags, quotes and comments repeated many times: no backtracking blow-up."""
    for unit in ("<a ", '<a x="', "<a x='", "<!--", "<a href=", "<a\tb=c d"):
        html = unit * 40_000
        assert track(html).startswith(html)


# Fragments that, joined at random, make every tokenizer corner: tags cut off, stray quotes, comments.
MARKUP = ["<a", "<A", " href", "=", '"', "'", ">", "<", "/", " ", "\n", "<!--", "-->", "</body>"]
TEXT = ["&amp;", "&quot;", "https://example.com/x", "mailto:a@b.c", "unsubscribe", "<img alt=", "é", "\x00"]
HTML_BITS = st.sampled_from([*MARKUP, *TEXT, "\ud800"])  # and a lone surrogate
CLICK_VALUE = re.compile(rf'"{re.escape(BASE)}/t/click/([\w.-]+)"')
ANY_VALUE = r"""(?:"[^"]*"|'[^']*'|[^\s>]*)"""


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(HTML_BITS | st.text(max_size=5), max_size=40))
def test_any_markup_is_tracked_without_raising_and_only_links_change(parts: list[str]) -> None:
    """Whatever the HTML, tracking returns, and only href values changed, each into a valid click."""
    html = "".join(parts)
    tracked = track(html)
    assert tracked.count(pixel()) == 1
    pieces = CLICK_VALUE.split(tracked.replace(pixel(), "", 1))
    literal, tokens = pieces[::2], pieces[1::2]
    assert all(SIGNER.verify(Purpose.CLICK, token).url for token in tokens)
    # Between the rewritten values, the input byte for byte.
    assert re.fullmatch(ANY_VALUE.join(re.escape(p) for p in literal), html, re.S), (html, tracked)


# --- push ---------------------------------------------------------------------------------------


PUSH = dataclasses.replace(DELIVERY, channel=Channel.IOS)


def test_push_data_gets_a_push_open_token() -> None:
    """Push data keeps its entries and gains a PUSH_OPEN token that verifies as this delivery."""
    data = track_push_data({"order": "42"}, PUSH, SIGNER, title="T", body="B", max_bytes=4096)
    assert data["order"] == "42"
    assert SIGNER.verify(Purpose.PUSH_OPEN, data[TRACKING_KEY]) == PUSH


def test_a_push_token_that_would_break_the_size_limit_is_left_out() -> None:
    """At exactly the size limit the token is added; one byte less and it is left out."""
    token = SIGNER.sign(Purpose.PUSH_OPEN, PUSH)
    data = {"blob": "é" * 1000}
    size = push_size("T", "B", {**data, TRACKING_KEY: token})
    assert track_push_data(data, PUSH, SIGNER, title="T", body="B", max_bytes=size) == {
        **data,
        TRACKING_KEY: token,
    }
    assert track_push_data(data, PUSH, SIGNER, title="T", body="B", max_bytes=size - 1) == data


def test_push_size_counts_like_the_apns_payload() -> None:
    """UTF-8 bytes of the JSON with the default separators: never less than the compact render count."""
    data = {"k": "ü"}
    payload = {"aps": {"alert": {"title": "T", "body": "B"}}, **data}
    assert push_size("T", "B", data) == len(json.dumps(payload, ensure_ascii=False).encode())
    assert push_size("T", "B", data) > len(
        json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    )


# --- the channel message ---------------------------------------------------------------------------


def record(channel: Channel, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "delivery_id": DELIVERY.delivery_id,
        "notification_id": DELIVERY.notification_id,
        "user_id": DELIVERY.user_id,
        "service": DELIVERY.service,
        "category": DELIVERY.category,
        "channel": channel.value.upper(),
        "title": None,
        "body": None,
        "data": {},
        "sms_text": None,
        "email_html": None,
        "email_text": None,
    }
    return base | fields


def test_with_tracking_per_channel_leaves_the_input_alone() -> None:
    """E-mail: HTML tracked, plain text as is. Push: data token. SMS: unchanged. Never mutates the input."""
    email = record(Channel.EMAIL, email_html=f'<a href="{U}">x</a>', email_text=f"x: {U}")
    tracked = with_tracking(email, Channel.EMAIL, SIGNER, max_push_bytes=4096, max_html_chars=10_000)
    assert tracked["email_html"] == f'<a href="{click(U)}">x</a>' + pixel()
    assert tracked["email_text"] == f"x: {U}"
    assert email["email_html"] == f'<a href="{U}">x</a>'
    for channel in (Channel.IOS, Channel.ANDROID):
        push = record(channel, title="T", body="B", data={"a": "b"})
        out = with_tracking(push, channel, SIGNER, max_push_bytes=4096, max_html_chars=10_000)
        assert SIGNER.verify(Purpose.PUSH_OPEN, out["data"].pop(TRACKING_KEY)).channel is channel
        assert out == push
        assert push["data"] == {"a": "b"}
    sms = record(Channel.SMS, sms_text=f"Go {U}")
    assert with_tracking(sms, Channel.SMS, SIGNER, max_push_bytes=4096, max_html_chars=10_000) == sms


# --- through plan_batch ----------------------------------------------------------------------------

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONTEXT = UserContext(
    user=User("u1", "en", "UTC"),
    devices=(Device(1, Channel.IOS, "tok-a", "app"), Device(2, Channel.IOS, "tok-b", "app")),
    contacts=(Contact(10, Channel.EMAIL, "u1@example.com"), Contact(11, Channel.SMS, "+15555550100")),
)
TEMPLATES = {
    "promo": [
        Template("promo", Channel.IOS, "en", 1, title="Hi", body="Sale {{ name }}", data={"screen": "sale"}),
        Template("promo", Channel.SMS, "en", 1, sms_text="Sale https://example.com/s"),
        Template(
            "promo",
            Channel.EMAIL,
            "en",
            1,
            email_subject="Sale",
            email_html='<html><body><a href="https://example.com/s?a=1&b=2">{{ name }}</a></body></html>',
        ),
    ]
}


def planned(tracking: TrackingSigner | None) -> list[dict[str, Any]]:
    req = NotificationRequest.parse(
        {
            "user_id": "u1",
            "template_id": "promo",
            "service": "shop",
            "category": "marketing",
            "params": {"name": "Ada"},
            "created_at": NOW,
        }
    )
    items = [Parsed(Record("t.requests", 0, 0, b"u1", b"avro"), req)]
    found = Lookups(seen={}, contexts={"u1": CONTEXT}, categories={}, templates=TEMPLATES, cap_usage={})
    kwargs: dict[str, Any] = {} if tracking is None else {"tracking": tracking}
    plan = plan_batch(items, found, names=TopicNames("t"), renderer=Renderer(), now=NOW, **kwargs)
    return [o.record for o in plan.outputs if o.schema == CHANNEL_MESSAGE]


def test_plan_batch_without_a_signer_writes_messages_as_rendered() -> None:
    """tracking=None (the default) leaves every message exactly as rendered."""
    messages = {m["target"]: m for m in planned(None)}
    assert messages["tok-a"]["data"] == messages["tok-b"]["data"] == {"screen": "sale"}
    # Exactly the render (autoescape touches only the parameters, not the template's own text).
    assert messages["u1@example.com"]["email_html"] == (
        '<html><body><a href="https://example.com/s?a=1&b=2">Ada</a></body></html>'
    )
    assert messages["+15555550100"]["sms_text"] == "Sale https://example.com/s"


def test_plan_batch_gives_every_delivery_its_own_tokens() -> None:
    """Two devices share one render, yet each push names its own delivery; the mail is tracked."""
    messages = {m["target"]: m for m in planned(SIGNER)}
    pushes = [messages["tok-a"], messages["tok-b"]]
    verified = [SIGNER.verify(Purpose.PUSH_OPEN, m["data"][TRACKING_KEY]) for m in pushes]
    assert [v.delivery_id for v in verified] == [m["delivery_id"] for m in pushes]
    assert len({v.delivery_id for v in verified}) == 2
    assert all(m["data"]["screen"] == "sale" for m in pushes)
    mail = messages["u1@example.com"]
    assert _click_destinations(mail["email_html"]) == ["https://example.com/s?a=1&b=2"]
    opened = [dict(a)["src"] for t, a in start_tags(mail["email_html"]) if t == "img"]
    delivery = SIGNER.verify(Purpose.OPEN, str(opened[0]).rpartition("/")[2])
    assert (delivery.delivery_id, delivery.service, delivery.category) == (
        mail["delivery_id"],
        "shop",
        "marketing",
    )
    assert mail["email_html"].endswith("</body></html>")
    assert messages["+15555550100"]["sms_text"] == "Sale https://example.com/s"


def _click_destinations(html: str) -> list[str | None]:
    hrefs = [str(dict(attrs)["href"]) for tag, attrs in start_tags(html) if tag == "a"]
    return [SIGNER.verify(Purpose.CLICK, href.rpartition("/")[2]).url for href in hrefs]

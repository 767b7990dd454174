"""The MIME writer: what a receiver's parser (CPython's ``email``, policy.default) reads back from it."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import cast

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumers.delivery.email_message import build_message
from consumers.delivery.email_mime import _boundary, render
from sandboxes.smtp import _parse as sandbox_parse

HEADERS = [b"Subject: hi\r\n", b"From: a@example.com\r\n", b"To: b@example.org\r\n"]

# Text as templates produce it: any character but surrogates, with line breaks of every kind, long
# lines, trailing blanks, leading dots and things that look like MIME syntax.
pieces = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(
        ["\n", "\r\n", "\r", " \n", "\t\n", ".", "=", "--", "=_", "=3D", "x" * 90, "Grüße", "日本語"]
    ),
)
bodies = st.lists(pieces, max_size=30).map("".join)


def receive(data: bytes) -> EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(data)


def as_received(text: str) -> str:
    """What a body reads as after the wire: every line break one LF, and a final one."""
    return "\n".join(line.decode("utf-8") for line in text.encode("utf-8").splitlines()) + "\n"


def content(part: EmailMessage) -> str:
    return cast(str, part.get_content()).replace("\r\n", "\n")


def check_wire(data: bytes) -> None:
    assert data.isascii()  # 7-bit clean: no 8BITMIME or SMTPUTF8 needed
    bare = data.replace(b"\r\n", b"")
    assert b"\n" not in bare
    assert b"\r" not in bare
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


@settings(max_examples=300, deadline=None)
@given(text=bodies.filter(bool), html=bodies.filter(bool))
def test_both_bodies_read_back_as_multipart_alternative(text: str, html: str) -> None:
    """Any two bodies come back unchanged, plain first, with CRLF-only 7-bit lines of legal length."""
    data = render(HEADERS, text, html, seed="d-1")
    check_wire(data)
    received = receive(data)
    assert received.get_content_type() == "multipart/alternative"
    assert not received.defects
    plain, rich = list(received.iter_parts())
    assert (plain.get_content_type(), rich.get_content_type()) == ("text/plain", "text/html")
    assert (content(cast(EmailMessage, plain)), content(cast(EmailMessage, rich))) == (
        as_received(text),
        as_received(html),
    )
    assert received["MIME-Version"] == "1.0"


@settings(max_examples=200, deadline=None)
@given(body=bodies.filter(bool), subtype=st.sampled_from(["plain", "html"]))
def test_one_body_is_a_single_part(body: str, subtype: str) -> None:
    """One body is the whole message: its type, its encoding header, and its text unchanged."""
    text, html = (body, None) if subtype == "plain" else (None, body)
    data = render(HEADERS, text, html, seed="d-1")
    check_wire(data)
    received = receive(data)
    assert received.get_content_type() == f"text/{subtype}"
    assert content(received) == as_received(body)


@pytest.mark.parametrize(
    ("body", "cte", "charset"),
    [
        ("Hello Bob,\nhere is your digest.\n", "7bit", "us-ascii"),
        ("a line longer than seventy-eight characters " * 3, "quoted-printable", "us-ascii"),
        ("Schöne Grüße aus Köln, wir freuen uns auf Ihren nächsten Besuch\n", "quoted-printable", "utf-8"),
        ("日本語のテキストです。" * 5, "base64", "utf-8"),
        ("tab\tand form feed\x0c", "quoted-printable", "us-ascii"),
    ],
)
def test_encoding_is_the_cheapest_that_is_7bit_clean(body: str, cte: str, charset: str) -> None:
    """Printable short-lined ASCII goes as is; otherwise quoted-printable, or base64 when shorter."""
    received = receive(render(HEADERS, body, None, seed="d"))
    assert received["Content-Transfer-Encoding"] == cte
    assert received.get_content_charset() == charset


def test_boundary_is_per_delivery_and_avoids_a_part_that_contains_it() -> None:
    """The same delivery gets the same bytes; a 7bit part holding the boundary makes it choose again."""
    assert render(HEADERS, "a", "b", seed="d-1") == render(HEADERS, "a", "b", seed="d-1")
    assert render(HEADERS, "a", "b", seed="d-1") != render(HEADERS, "a", "b", seed="d-2")
    first = _boundary("d-1", [])
    text = f"--{first.decode()}\nlooks like a delimiter\n"
    data = render(HEADERS, text, "<p>b</p>", seed="d-1")
    assert f'boundary="{first.decode()}"'.encode() not in data
    plain = cast(EmailMessage, receive(data).get_body(("plain",)))
    assert content(plain) == text


@settings(max_examples=150, deadline=None)
@example(subject=" x", text="a", html=None)
@example(subject="x ", text="a", html=None)
@example(subject=" ", text="a", html="b")
@given(
    subject=st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Zl", "Zp"]), max_size=120),
    text=bodies.filter(bool),
    html=st.one_of(st.none(), bodies.filter(bool)),
)
def test_the_smtp_sandbox_reads_back_what_the_worker_renders(
    subject: str, text: str, html: str | None
) -> None:
    """The sandbox's cheap compat32 parse gives the subject, both bodies and the Message-ID as sent."""
    message = {
        "delivery_id": "d-1",
        "target": "bob@example.org",
        "email_subject": subject,
        "email_text": text,
        "email_html": html,
        "created_at": None,
    }
    mail = build_message(message, sender="Nötify <n@example.com>", unsubscribe_url=None, domain="example.com")
    payload, headers = sandbox_parse(mail.data)
    assert payload["subject"] == subject
    assert payload["text"] == as_received(text)
    assert payload["html"] == (None if html is None else as_received(html))
    assert payload["message_id"] == mail.message_id
    assert headers["to"] == "bob@example.org"


def test_the_smtp_sandbox_reads_an_8bit_subject() -> None:
    """SMTPUTF8 mail (raw UTF-8 in the header, as other clients may send) is read, not refused."""
    sent = EmailMessage(policy=email.policy.SMTPUTF8)
    sent["Subject"] = "Grüße"
    sent["To"] = "bob@example.org"
    sent.set_content("hi")
    payload, _ = sandbox_parse(sent.as_bytes())
    assert payload["subject"] == "Grüße"
    assert payload["text"] == "hi\n"

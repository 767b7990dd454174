"""The e-mail adapter's pure parts: the message it renders, and the Outcome of every SMTP reply."""

from __future__ import annotations

import datetime as dt
import email.policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, cast

import pytest
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectTimeoutError,
    SMTPDataError,
    SMTPException,
    SMTPNotSupported,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.delivery.email import EmailAdapter
from consumers.delivery.email_message import (
    DEFAULT_TRANSACTIONAL,
    InvalidEmail,
    Mail,
    build_message,
    message_id_for,
)
from consumers.delivery.email_reply import classify, classify_exception
from consumers.delivery.outcome import Outcome, Status
from notify_core.exceptions import ConfigError
from notify_core.tracking import TrackingSigner

P, R, S = Status.PERMANENT, Status.RETRY, Status.SENT
SIGNER = TrackingSigner(tracking_secrets=["t"], unsubscribe_secrets=["s"])
SENDER = "Notify <no-reply@example.com>"
URL = "https://example.com/t/unsubscribe/abc.def.ghi"
CREATED = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)


def channel_message(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "delivery_id": "d-1",
        "notification_id": "n-1",
        "user_id": "u-1",
        "category": "marketing",
        "target": "bob@example.org",
        "email_subject": "Your weekly digest",
        "email_text": "Hello Bob,\nhere is your digest.\n",
        "email_html": "<p>Hello Bob,</p><p>here is your digest.</p>",
        "expires_at": None,
        "created_at": CREATED,
    }
    return base | extra


def build(message: dict[str, Any], url: str | None = URL, **kwargs: Any) -> Mail:
    return build_message(message, sender=SENDER, unsubscribe_url=url, domain="example.com", **kwargs)


def wire(mail: Mail) -> tuple[bytes, EmailMessage]:
    """The bytes the adapter sends, and what a receiver parses from them."""
    return mail.data, BytesParser(policy=email.policy.default).parsebytes(mail.data)


def parsed(message: dict[str, Any], url: str | None = URL, **kwargs: Any) -> EmailMessage:
    return wire(build(message, url, **kwargs))[1]


# --- build_message ----------------------------------------------------------------------------------


def test_multipart_alternative_with_both_parts_and_headers() -> None:
    data, received = wire(build(channel_message()))
    assert received.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in received.iter_parts()]
    assert parts == ["text/plain", "text/html"]  # plain first: the last part is the preferred one
    plain = cast(EmailMessage, received.get_body(("plain",))).get_content()
    html = cast(EmailMessage, received.get_body(("html",))).get_content()
    assert plain.replace("\r\n", "\n") == "Hello Bob,\nhere is your digest.\n"
    assert "<p>Hello Bob,</p>" in html
    assert received["Subject"] == "Your weekly digest"
    assert received["From"] == SENDER
    assert received["To"] == "bob@example.org"
    assert received["Date"].datetime == CREATED
    assert received["Message-ID"] == message_id_for("d-1", "example.com")
    assert data.decode("ascii")  # 7-bit clean: no 8BITMIME or SMTPUTF8 needed
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only


def test_message_id_is_stable_per_delivery_and_unique_across_deliveries() -> None:
    first = parsed(channel_message())
    again = parsed(channel_message())
    other = parsed(channel_message(delivery_id="d-2"))
    assert build(channel_message()) == build(channel_message())  # a retry sends the very same bytes
    assert wire(build(channel_message()))[1]["Message-ID"] == build(channel_message()).message_id
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert first["Date"] == again["Date"]  # Date is the delivery's created_at, not the attempt's time
    message_id = str(first["Message-ID"])
    assert message_id.startswith("<")
    assert message_id.endswith("@example.com>")


def test_list_unsubscribe_for_non_transactional_categories() -> None:
    data, received = wire(build(channel_message(category="marketing")))
    assert received["List-Unsubscribe"] == f"<{URL}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"List-Unsubscribe: <{URL}>\r\n".encode() in data


@pytest.mark.parametrize("category", sorted(DEFAULT_TRANSACTIONAL))
def test_no_list_unsubscribe_for_transactional_categories(category: str) -> None:
    mail = parsed(channel_message(category=category))
    assert mail["List-Unsubscribe"] is None
    assert mail["List-Unsubscribe-Post"] is None


def test_transactional_set_is_a_parameter() -> None:
    mail = parsed(channel_message(category="billing"), transactional={"billing"})
    assert mail["List-Unsubscribe"] is None
    assert parsed(channel_message(category="account"), transactional={"billing"})["List-Unsubscribe"]


def test_no_list_unsubscribe_without_url() -> None:
    assert parsed(channel_message(), url=None)["List-Unsubscribe"] is None


def test_long_unsubscribe_url_is_never_encoded_or_folded() -> None:
    """CPython would RFC 2047-encode a long List-Unsubscribe; receivers read the raw <URI>."""
    url = "https://example.com/unsubscribe/v1." + "A" * 300 + ".B"
    data, _ = wire(build(channel_message(), url=url))
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in data
    assert b"=?utf-8?" not in data.split(b"\r\n\r\n")[0].split(b"List-Unsubscribe:")[1].split(b"\r\n")[0]


def test_single_part_when_only_one_body_is_given() -> None:
    _, text_only = wire(build(channel_message(email_html=None)))
    assert text_only.get_content_type() == "text/plain"
    _, html_only = wire(build(channel_message(email_text=None)))
    assert html_only.get_content_type() == "text/html"


@pytest.mark.parametrize(
    "subject",
    [
        "Héllo wörld, your order 📦 #1234 has shipped",
        "Ünïcode " * 30,
        "plain ascii " * 20,
        "x" * 120,  # one word longer than a line
        "looks like =?utf-8?q?an_encoded_word?= but is literal",
        "two  spaces   and    more",
        " leading and trailing blanks ",
        "",
    ],
)
def test_subject_survives_the_wire(subject: str) -> None:
    data, received = wire(build(channel_message(email_subject=subject)))
    assert received["Subject"] == subject
    header_block = data.split(b"\r\n\r\n")[0]
    assert max(len(line) for line in header_block.split(b"\r\n")) <= 998


@settings(max_examples=200, deadline=None)
@given(
    subject=st.lists(
        st.sampled_from(["Héllo", "wörld", "order", "#1234", "📦", "a", "the", "ok", "x" * 70, "Ünï"]),
        max_size=40,
    ).map(" ".join)
)
def test_subject_round_trip_property(subject: str) -> None:
    """CPython 3.11 alone drops a space between encoded words in ~7% of long subjects like these."""
    _, received = wire(build(channel_message(email_subject=subject)))
    assert received["Subject"] == subject


def test_non_ascii_bodies_are_encoded_7bit() -> None:
    data, received = wire(build(channel_message(email_text="Grüße\n.leading dot\n", email_html="<p>ü</p>")))
    assert data.isascii()
    text = cast(EmailMessage, received.get_body(("plain",))).get_content()
    assert text.replace("\r\n", "\n") == "Grüße\n.leading dot\n"


@pytest.mark.parametrize(
    ("field", "value", "reason", "deactivate"),
    [
        ("email_subject", "Hi\r\nBcc: victim@example.net", "header_injection", False),
        ("email_subject", "Hi\nthere", "header_injection", False),
        ("email_subject", "Hi\rthere", "header_injection", False),
        ("email_subject", "Hi\x00there", "header_injection", False),
        ("email_subject", "Hi\u2028there", "header_injection", False),
        ("target", "bob@example.org\r\nBcc: victim@example.net", "header_injection", True),
        ("target", "bob@example.org\n", "header_injection", True),
        ("target", "not-an-address", "invalid_address", True),
        ("target", "bob@localhost", "invalid_address", True),
        ("target", "Bob <bob@example.org>", "invalid_address", True),
        ("target", "bob smith@example.org", "invalid_address", True),
        ("target", "bøb@example.org", "unsupported_address", False),
        ("email_subject", None, "missing_subject", False),
        ("email_subject", "x" * 999, "subject_too_long", False),
    ],
)
def test_unsafe_messages_are_refused(field: str, value: Any, reason: str, deactivate: bool) -> None:
    with pytest.raises(InvalidEmail) as caught:
        build(channel_message(**{field: value}))
    assert (caught.value.reason, caught.value.deactivate_target) == (reason, deactivate)
    assert "victim" not in caught.value.detail  # no personal data
    assert "bob" not in caught.value.detail


def test_missing_body_and_bad_url_are_refused() -> None:
    with pytest.raises(InvalidEmail, match="neither"):
        build(channel_message(email_text=None, email_html=""))
    for url in (
        "https://example.com/u\r\nBcc: x@y.z",
        "https://example.com/a>b",
        "ftp://x/y",
        "https://" + "a" * 900,
    ):
        with pytest.raises(InvalidEmail) as caught:
            build(channel_message(), url=url)
        assert caught.value.reason == "invalid_unsubscribe_url"


@pytest.mark.parametrize(
    "sender", [SENDER, "Nötify Tëam <no-reply@example.com>", '"Notify, Inc." <no-reply@example.com>']
)
def test_sender_survives_the_wire(sender: str) -> None:
    """A display name with non-ASCII letters or specials is encoded or quoted, and reads back as given."""
    mail = build_message(channel_message(), sender=sender, unsubscribe_url=None, domain="example.com")
    data, received = wire(mail)
    assert data.isascii()
    assert received["From"] == sender


def test_sender_header_injection_is_refused() -> None:
    with pytest.raises(InvalidEmail) as caught:
        build_message(
            channel_message(), sender="Notify <a@example.com>\r\nBcc: x@y.z", unsubscribe_url=None, domain="d"
        )
    assert caught.value.reason == "invalid_sender"


@pytest.mark.asyncio
async def test_adapter_turns_refusals_and_expiry_into_permanent_outcomes_without_a_call() -> None:
    """Nothing listens on the port: an Outcome other than a connection error proves no call was made."""
    adapter = EmailAdapter(
        host="127.0.0.1",
        port=9,
        sender=SENDER,
        public_base_url="https://example.com",
        signer=SIGNER,
        timeout_s=1.0,
    )
    injected = await adapter.send(channel_message(email_subject="a\r\nBcc: x@y.z"))
    assert (injected.status, injected.reason) == (P, "header_injection")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert await adapter.send(channel_message(expires_at=past)) == Outcome.permanent(
        "expired", detail="expires_at passed before the send"
    )
    past_ms = int(past.timestamp() * 1000)
    assert (await adapter.send(channel_message(expires_at=past_ms))).reason == "expired"
    assert adapter.connections_opened == 0
    await adapter.close()


@pytest.mark.parametrize(
    "overrides",
    [
        {"sender": "no address"},
        {"sender": "a@example.com\r\nBcc: b@example.com"},
        {"public_base_url": "mailto:x@example.com"},
        {"public_base_url": "https://example.com/a b"},
        {"pool_size": 0},
        {"username": "u", "password": "p", "host": "smtp.example.com"},  # credentials in clear text
    ],
)
def test_adapter_refuses_bad_configuration(overrides: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 25,
        "sender": SENDER,
        "public_base_url": "https://example.com",
        "signer": SIGNER,
    }
    with pytest.raises(ConfigError):
        EmailAdapter(**(kwargs | overrides))


# --- classify ---------------------------------------------------------------------------------------

# (code, text as aiosmtplib reports it, expected status, deactivate_target): replies seen from Gmail,
# Outlook, Postfix, Exim and aiosmtpd.
REPLIES: list[tuple[int, str, Status, bool]] = [
    (250, "2.0.0 OK 1700000000 a1-20020a0562140d4100b0067f1d0fa3e5si123456qvb.318 - gsmtp", S, False),
    (250, "2.0.0 Ok: queued as 4F1A22C0123", S, False),
    (251, "2.1.5 User not local; will forward", S, False),
    (421, "4.7.0 Try again later, closing connection. (EHLO)", R, False),
    (421, "4.3.2 Service not available, closing transmission channel", R, False),
    (450, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents", R, False),
    (450, "4.1.1 <bob@example.org>: Recipient address rejected: unverified address", R, False),
    (451, "4.7.1 Greylisting in action, please come back later", R, False),
    (451, "4.3.0 Temporary server error. Please try again later", R, False),
    (452, "4.2.2 The email account that you tried to reach is over quota.", R, False),
    (452, "4.5.3 Too many recipients", R, False),
    (454, "4.7.0 TLS not available due to local problem", R, False),
    (550, "5.1.1 The email account that you tried to reach does not exist.", P, True),
    (
        550,
        "5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
        P,
        True,
    ),
    (550, "5.5.0 Requested action not taken: mailbox unavailable", P, False),
    (550, "5.2.1 The email account that you tried to reach is disabled.", P, True),
    (550, "5.7.1 Message rejected as spam by Content Filtering.", P, False),
    (550, "5.7.26 This mail has been blocked because the sender is unauthenticated.", P, False),
    (550, "No such user here", P, True),
    (550, "Requested action not taken: mailbox unavailable", P, False),
    (550, "Message rejected: spam", P, False),
    (551, "5.1.6 User not local; please try <forward-path>", P, True),
    (551, "User not local; please try <forward-path>", P, False),
    (552, "5.2.2 The email account that you tried to reach is over quota", P, False),
    (552, "5.3.4 Message size exceeds fixed maximum message size", P, False),
    (553, "5.1.3 Error: malformed address", P, True),
    (553, "5.7.1 <x@example.com>: Sender address rejected: not owned by user", P, False),
    (553, "Invalid recipient address", P, True),
    (554, "5.7.1 <bob@example.org>: Relay access denied", P, False),
    (554, "5.1.1 Recipient address rejected: undeliverable address", P, True),
    (556, "5.1.10 Recipient address has null MX", P, True),
    (535, "5.7.8 Username and Password not accepted.", P, False),
    (530, "5.7.0 Must issue a STARTTLS command first.", P, False),
    (354, "End data with <CR><LF>.<CR><LF>", R, False),
]


@pytest.mark.parametrize(("code", "text", "status", "deactivate"), REPLIES)
def test_classify_real_replies(code: int, text: str, status: Status, deactivate: bool) -> None:
    outcome = classify(code, text, message_id="<m@example.com>")
    assert (outcome.status, outcome.deactivate_target) == (status, deactivate)
    if status is S:
        assert outcome == Outcome.sent("<m@example.com>")
        return
    assert outcome.reason == (str(code) if code >= 400 else "bad_response")
    assert outcome.detail is not None
    assert outcome.detail.startswith(f"SMTP {code}")
    assert "@" not in outcome.detail  # addresses in reply text are personal data


def test_sender_side_replies_never_deactivate_the_recipient() -> None:
    assert classify(550, "5.1.1 Sender unknown", about_recipient=False).deactivate_target is False
    outcome = classify_exception(SMTPSenderRefused(553, "5.1.3 bad sender", "a@b.c"))
    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (P, "553", False)


def test_classify_exception_table() -> None:
    refused = SMTPRecipientsRefused([SMTPRecipientRefused(550, "5.1.1 User unknown", "bob@example.org")])
    assert classify_exception(refused) == Outcome.permanent(
        "550", deactivate_target=True, detail="SMTP 550 5.1.1 User unknown"
    )
    mixed = SMTPRecipientsRefused(
        [
            SMTPRecipientRefused(550, "5.1.1 User unknown", "a@example.org"),
            SMTPRecipientRefused(451, "4.3.0 try later", "b@example.org"),
        ]
    )
    assert (classify_exception(mixed).status, classify_exception(mixed).reason) == (R, "451")
    assert classify_exception(SMTPRecipientRefused(452, "4.2.2 full", "a@b.c")).status is R
    data_error = classify_exception(SMTPDataError(554, "5.7.1 Message rejected"))
    assert (data_error.status, data_error.reason) == (P, "554")
    assert classify_exception(SMTPDataError(451, "4.3.0 later")).status is R
    auth = classify_exception(SMTPAuthenticationError(535, "5.7.8 bad credentials"))
    assert (auth.status, auth.reason, auth.deactivate_target) == (P, "535", False)
    assert classify_exception(SMTPAuthenticationError(454, "4.7.0 temporary")).status is R
    cases: list[tuple[BaseException, str]] = [
        (SMTPServerDisconnected("Connection lost"), "connection_error"),
        (SMTPConnectError("Error connecting to 127.0.0.1 on port 25"), "connection_error"),
        (SMTPConnectTimeoutError("Timed out connecting"), "timeout"),
        (SMTPReadTimeoutError("Timed out waiting for server response"), "timeout"),
        (TimeoutError(), "timeout"),
        (ConnectionResetError(), "connection_error"),
        (SMTPNotSupported("SMTP STARTTLS extension not supported by server."), "smtp_error"),
        (SMTPException("No suitable authentication method found."), "smtp_error"),
    ]
    for exc, reason in cases:
        outcome = classify_exception(exc)
        assert (outcome.status, outcome.reason) == (R, reason), exc

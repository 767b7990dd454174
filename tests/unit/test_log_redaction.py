"""redact_text masks personal data in any log text (a table); RedactFilter applies it to stdlib records."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from notify_core.logs import RedactFilter, configure_logging, install_redaction, mask, redact_text

PHONE = "+12015550147"
TEXT = "Your code is 987654"
APNS_TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
FCM_TOKEN = "cXyZ0aBcD3f:APA91bHq-2Zx_fake-registration-token"

# What botocore 1.44 prints at DEBUG for SmsAdapter's publish (botocore.endpoint), cut to the body.
BOTOCORE_PARAMS = (
    "Making request for OperationModel(name=Publish) with params: {'url_path': '/', 'query_string': '',"
    " 'method': 'POST', 'body': {'Action': 'Publish', 'Version': '2010-03-31',"
    f" 'PhoneNumber': '{PHONE}', 'Message': '{TEXT}',"
    " 'MessageAttributes.entry.1.Name': 'AWS.SNS.SMS.SMSType',"
    " 'MessageAttributes.entry.1.Value.StringValue': 'Transactional'}, 'url': 'http://127.0.0.1:8445/'}"
)


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        # botocore's request parameters: the number and the text go, the rest of the request stays.
        (
            BOTOCORE_PARAMS,
            [PHONE, "987654", "Your code"],
            [
                f"'PhoneNumber': '{mask(PHONE)}'",
                f"'Message': '{mask(TEXT)}'",
                "'Action': 'Publish'",
                "'MessageAttributes.entry.1.Value.StringValue': 'Transactional'",
                "'url': 'http://127.0.0.1:8445/'",
            ],
        ),
        # An SMS text with quotes of both kinds: repr escapes one of them.
        (repr({"Message": 'He said "it\'s 5" +1'}), ["He said", "it\\'s"], [f"'Message': '{mask('')[:10]}"]),
        (repr({"Message": "it's Ada"}), ["Ada", "it's"], ["'Message': \"<redacted:"]),
        (repr({"Message": "line one\nline two"}), ["line one", "line two"], ["'Message': '<redacted:"]),
        (repr({"Message": b"bytes 1234"}), ["bytes 1234"], ["'Message': b'<redacted:"]),
        # JSON, as a JSON-protocol client would print it.
        (f'{{"PhoneNumber": "{PHONE}", "Message": "{TEXT}"}}', [PHONE, TEXT], ['"PhoneNumber": "<redacted:']),
        # The form body on the wire.
        (
            "Action=Publish&PhoneNumber=%2B12015550147&Message=Your+code+is+987654&Version=2010-03-31",
            ["12015550147", "987654"],
            ["Action=Publish&PhoneNumber=<redacted:", "&Version=2010-03-31"],
        ),
        # SNS's own error text echoes the number (botocore logs the response body).
        (
            f"<Message>Invalid parameter: PhoneNumber Reason: {PHONE} is not valid to publish to</Message>",
            [PHONE],
            ["Invalid parameter: PhoneNumber Reason: <redacted:", "is not valid to publish to"],
        ),
        ("call +44 20 7946 0001 now", ["7946"], ["call <redacted:", " now"]),
        ("call +44-20-7946-0001 now", ["7946"], ["call <redacted:"]),
        ("to %2B33612345678 via", ["33612345678"], ["to <redacted:"]),
        # Not phone numbers.
        ("took +12 ms at 2026-12-01T19:41:52+00:00, offset +123456", [], ["+12 ms", "+00:00", "+123456"]),
        ("tel 12015550147 without a plus", [], ["12015550147"]),
        # E-mail addresses, plain and percent-encoded; a database URL's user@IP is left alone.
        (
            "RCPT TO:<ada.lovelace@example.com> refused",
            ["ada.lovelace", "example.com"],
            ["RCPT TO:<<redacted:"],
        ),
        ("to=grace%40example.fr&x=1", ["grace", "example.fr"], ["to=<redacted:", "&x=1"]),
        ("Notify <no-reply@example.com>", ["no-reply@"], ["Notify <<redacted:"]),
        ("postgresql://notify@127.0.0.1:55432/notify", [], ["postgresql://notify@127.0.0.1:55432/notify"]),
        # APNs device tokens in the request path (h2/hpack logs), FCM tokens in instance-ID URLs.
        (
            f"send_headers [(':method', 'POST'), (':path', '/3/device/{APNS_TOKEN}')]",
            [APNS_TOKEN],
            ["(':path', '/3/device/<redacted:", "(':method', 'POST')"],
        ),
        (
            f"POST https://api.push.apple.com/3/device/{APNS_TOKEN}?x=1 HTTP/2",
            [APNS_TOKEN],
            ["https://api.push.apple.com/3/device/<redacted:", "?x=1 HTTP/2"],
        ),
        (
            f"GET https://iid.googleapis.com/iid/info/{FCM_TOKEN}?details=true",
            [FCM_TOKEN, "APA91b"],
            ["?details"],
        ),
        (f"/iid/v1/{FCM_TOKEN}/rel/topics/news", [FCM_TOKEN], ["/iid/v1/<redacted:", "/rel/topics/news"]),
        ("POST /v1/projects/notify-sandbox/messages:send", [], ["/v1/projects/notify-sandbox/messages:send"]),
        # Sensitive keys anywhere in a repr or JSON; credentials too.
        (
            repr({"message": {"token": FCM_TOKEN, "notification": {"title": "Hi"}}, "delivery_id": "d-1"}),
            [FCM_TOKEN],
            ["'token': '<redacted:", "'title': 'Hi'", "'delivery_id': 'd-1'"],
        ),
        ("{'Authorization': b'Bearer ya29.secret'}", ["ya29.secret"], ["'Authorization': b'<redacted:"]),
        ('{"access_token": "ya29.secret", "expires_in": 3600}', ["ya29.secret"], ['"expires_in": 3600']),
        (
            "GET /x?access_token=ya29.secret&alt=json",
            ["ya29.secret"],
            ["access_token=<redacted:", "&alt=json"],
        ),
        # Keys merely starting like a sensitive one are not touched.
        ("{'MessageId': 'c060c0ad', 'MessageAttributes': {}}", [], ["'MessageId': 'c060c0ad'"]),
        ("nothing personal here", [], ["nothing personal here"]),
    ],
)
def test_redact_text(text: str, gone: list[str], kept: list[str]) -> None:
    redacted = redact_text(text)
    for value in gone:
        assert value not in redacted
    for value in kept:
        assert value in redacted
    assert redact_text(redacted) == redacted  # masking what is masked changes nothing


def test_a_masked_value_is_the_stable_mask_of_the_original() -> None:
    assert redact_text(f"to {PHONE}") == f"to {mask(PHONE)}"
    assert redact_text(f"'PhoneNumber': '{PHONE}'") == f"'PhoneNumber': '{mask(PHONE)}'"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_the_filter_masks_formatted_arguments_exceptions_and_stacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.debug("params: %s", {"PhoneNumber": PHONE, "Message": TEXT})
    logger.debug("to %(phone)s", {"phone": PHONE})
    try:
        raise ValueError(f"refused {PHONE} for ada@example.com")
    except ValueError:
        logger.exception("send failed")
    logger.info("from %s", "grace@example.com", stack_info=True)
    out = stream.getvalue()
    for value in (PHONE, "987654", "ada@example.com", "grace@example.com"):
        assert value not in out
    assert "ValueError: refused <redacted:" in out
    assert f"'PhoneNumber': '{mask(PHONE)}'" in out


def test_a_broken_format_does_not_raise_and_drops_the_arguments(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("two %s %s, one given", PHONE)
    out = stream.getvalue()
    assert "two %s %s, one given (arguments dropped" in out
    assert PHONE not in out


def test_configure_logging_installs_the_filter_on_every_root_handler_once() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        configure_logging("INFO")
        install_redaction()
        assert [type(f) for f in handler.filters] == [RedactFilter]
        assert all(any(isinstance(f, RedactFilter) for f in h.filters) for h in root.handlers)
    finally:
        root.removeHandler(handler)
        for h in root.handlers:
            for f in [f for f in h.filters if isinstance(f, RedactFilter)]:
                h.removeFilter(f)
        structlog.reset_defaults()

"""SNS error codes, row by row, as the ``Outcome`` the worker acts on; the ``Publish`` arguments built
from a channel message; and the adapter decisions that need no network (expiry, bad messages, config)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    SSLError,
)
from hypothesis import given
from hypothesis import strategies as st

from consumers.delivery.outcome import Outcome, Status
from consumers.delivery.sms import (
    SENDER_ID_ATTRIBUTE,
    SMS_TYPE_ATTRIBUTE,
    SmsAdapter,
    SmsType,
    classify_error,
    classify_exception,
    is_expired,
    publish_args,
    redact,
    sms_type_for,
)
from notify_core.settings import Settings

P, R = Status.PERMANENT, Status.RETRY
PHONE = "+15555550123"
BAD_NUMBER = f"Invalid parameter: PhoneNumber Reason: {PHONE} is not valid to publish to"

# (code, HTTP status, message, expected status, deactivate_target): botocore's SNS model, the
# generic AWS Query errors, and the texts SNS and moto really send.
SNS_TABLE: list[tuple[str, int, str, Status, bool]] = [
    ("Throttling", 400, "Rate exceeded", R, False),
    ("ThrottlingException", 400, "Rate exceeded", R, False),
    ("Throttled", 429, "Rate exceeded", R, False),
    ("KMSThrottling", 400, "", R, False),
    ("InternalError", 500, "Internal Error", R, False),
    ("InternalFailure", 500, "", R, False),
    ("ServiceUnavailable", 503, "Service is unavailable", R, False),
    ("RequestTimeout", 408, "", R, False),
    ("InvalidParameter", 400, BAD_NUMBER, P, True),
    ("InvalidParameter", 400, "Phone number does not meet the E164 format", P, True),  # moto
    ("InvalidParameter", 400, "Invalid parameter: Message too long", P, False),
    ("InvalidParameter", 400, "Invalid parameter: MessageAttributes", P, False),
    ("ParameterValueInvalid", 400, BAD_NUMBER, P, True),
    ("ParameterValueInvalid", 400, "Invalid parameter: SenderID", P, False),
    ("InvalidParameterValue", 400, BAD_NUMBER, P, True),
    ("OptedOut", 400, "Phone number is opted out", P, True),
    ("AuthorizationError", 403, "User is not authorized to perform: SNS:Publish", P, False),
    ("InvalidClientTokenId", 403, "The security token included in the request is invalid.", P, False),
    ("SignatureDoesNotMatch", 403, "The request signature we calculated does not match", P, False),
    ("IncompleteSignature", 400, "", P, False),
    ("InvalidSecurity", 403, "", P, False),
    ("MissingAuthenticationToken", 403, "", P, False),
    ("ExpiredToken", 400, "The security token included in the request is expired", P, False),
    ("KMSAccessDenied", 400, "", P, False),
    ("KMSDisabled", 400, "", P, False),
    ("KMSOptInRequired", 403, "", P, False),
    ("ValidationException", 400, "", P, False),
    ("UserError", 400, "", P, False),
    ("EndpointDisabled", 400, "Endpoint is disabled", P, False),
    ("NotFound", 404, "", P, False),
    # Codes we do not know: the HTTP class decides.
    ("SomethingNew", 400, "", P, False),
    ("SomethingNew", 429, "", R, False),
    ("SomethingNew", 502, "", R, False),
    ("", 0, "", R, False),
]


@pytest.mark.parametrize(("code", "http_status", "message", "status", "deactivate"), SNS_TABLE)
def test_classify_error(code: str, http_status: int, message: str, status: Status, deactivate: bool) -> None:
    outcome = classify_error(code, http_status, message)
    assert (outcome.status, outcome.deactivate_target) == (status, deactivate)
    assert outcome.reason == (code or str(http_status))
    assert outcome.provider_message_id is None
    assert outcome.detail is not None
    assert PHONE not in outcome.detail  # personal data
    assert "5555550123" not in outcome.detail


def _client_error(code: str, status: int, message: str) -> Any:
    response = {
        "Error": {"Type": "Sender", "Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Publish")


@pytest.mark.parametrize(("code", "http_status", "message", "status", "deactivate"), SNS_TABLE[:20])
def test_client_error_goes_through_the_table(
    code: str, http_status: int, message: str, status: Status, deactivate: bool
) -> None:
    assert classify_exception(_client_error(code, http_status, message)) == classify_error(
        code, http_status, message
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ReadTimeoutError(endpoint_url="http://sns"), Outcome.retry("timeout")),
        (ConnectTimeoutError(endpoint_url="http://sns"), Outcome.retry("timeout")),
        (EndpointConnectionError(endpoint_url="http://sns"), Outcome.retry("connection_error")),
        (SSLError(endpoint_url="http://sns", error="bad"), Outcome.retry("connection_error")),
        (ConnectionClosedError(endpoint_url="http://sns"), Outcome.retry("connection_error")),
        (NoCredentialsError(), Outcome.permanent("config_error")),
        (ParamValidationError(report="Message is required"), Outcome.permanent("invalid_request")),
    ],
)
def test_classify_exception(exc: BaseException, expected: Outcome) -> None:
    outcome = classify_exception(exc)
    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (
        expected.status,
        expected.reason,
        False,
    )


def test_read_timeout_warns_of_a_possible_duplicate() -> None:
    detail = classify_exception(ReadTimeoutError(endpoint_url="http://sns")).detail
    assert detail is not None
    assert "duplicate" in detail


def test_client_error_without_metadata_is_retried() -> None:
    assert classify_exception(ClientError({}, "Publish")).status is R


# --- publish arguments ---------------------------------------------------------------------------


def message(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "delivery_id": "d-1",
        "target": PHONE,
        "sms_text": "Your code is 123456",
        "category": "security",
        "expires_at": None,
    }
    return base | extra


def test_publish_args_transactional_with_sender_id() -> None:
    assert publish_args(message(), sender_id="NOTIFY") == {
        "PhoneNumber": PHONE,
        "Message": "Your code is 123456",
        "MessageAttributes": {
            SMS_TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": "Transactional"},
            SENDER_ID_ATTRIBUTE: {"DataType": "String", "StringValue": "NOTIFY"},
        },
    }


@pytest.mark.parametrize(
    ("category", "default", "expected"),
    [
        ("marketing", "Transactional", "Promotional"),
        ("Marketing", "Transactional", "Promotional"),
        ("security", "Transactional", "Transactional"),
        ("order_update", "Transactional", "Transactional"),
        ("order_update", "Promotional", "Promotional"),
        ("marketing", "Promotional", "Promotional"),
        (None, "Transactional", "Transactional"),
    ],
)
def test_sms_type_by_category(category: str | None, default: SmsType, expected: SmsType) -> None:
    assert sms_type_for(category, default) == expected
    args = publish_args(message(category=category), sender_id=None, default_sms_type=default)
    assert args["MessageAttributes"][SMS_TYPE_ATTRIBUTE] == {"DataType": "String", "StringValue": expected}


@pytest.mark.parametrize("sender_id", [None, ""])
def test_no_sender_id_attribute_when_unset(sender_id: str | None) -> None:
    assert SENDER_ID_ATTRIBUTE not in publish_args(message(), sender_id=sender_id)["MessageAttributes"]


@pytest.mark.parametrize(
    "bad", [{"sms_text": None}, {"sms_text": ""}, {"target": ""}, {"target": None}, {"target": 15555550123}]
)
def test_publish_args_rejects_incomplete_messages(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="SMS message without") as caught:
        publish_args(message(**bad), sender_id="NOTIFY")
    assert "5555550123" not in str(caught.value)


# --- redaction and expiry ------------------------------------------------------------------------


def test_redact_hides_numbers_keeps_words() -> None:
    assert (
        redact(BAD_NUMBER) == "Invalid parameter: PhoneNumber Reason: <redacted> is not valid to publish to"
    )
    assert redact("+44 20 7946 0958 and (555) 555-0123") == "<redacted> and <redacted>"
    assert redact("Rate exceeded, 1600 bytes") == "Rate exceeded, 1600 bytes"


@given(st.from_regex(r"\+?[1-9]\d{6,14}", fullmatch=True), st.text(alphabet="abc :", max_size=20))
def test_redact_never_leaves_a_phone_number(number: str, around: str) -> None:
    assert not re.search(r"\d{7}", redact(f"{around}{number}{around}"))


NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("expires_at", "expired"),
    [
        (None, False),
        (NOW + dt.timedelta(seconds=1), False),
        (NOW, True),
        (NOW - dt.timedelta(seconds=1), True),
        (dt.datetime(2026, 1, 1, 11, 0), True),  # naive: read as UTC
        (int((NOW + dt.timedelta(minutes=1)).timestamp() * 1000), False),  # epoch millis
        (int((NOW - dt.timedelta(minutes=1)).timestamp() * 1000), True),
    ],
)
def test_is_expired(expires_at: dt.datetime | int | None, expired: bool) -> None:
    assert is_expired({"expires_at": expires_at}, NOW) is expired


# --- adapter decisions that never reach the network ------------------------------------------------

# Nothing listens on port 9 (discard) on loopback: a call that got through would say connection_error.
UNREACHABLE = "http://127.0.0.1:9"


def make_adapter(**kwargs: Any) -> SmsAdapter:
    settings = Settings().model_copy(update={"sns_endpoint": UNREACHABLE})
    return SmsAdapter.from_settings(settings, connect_timeout_s=0.5, **kwargs)


@pytest.mark.asyncio
async def test_expired_message_is_permanent_without_a_call() -> None:
    adapter = make_adapter()
    try:
        outcome = await adapter.send(message(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    finally:
        await adapter.close()
    assert (outcome.status, outcome.reason) == (P, "expired")


@pytest.mark.asyncio
async def test_message_without_text_is_permanent_without_a_call() -> None:
    adapter = make_adapter()
    try:
        outcome = await adapter.send(message(sms_text=None))
    finally:
        await adapter.close()
    assert (outcome.status, outcome.reason) == (P, "invalid_message")


@pytest.mark.asyncio
async def test_client_makes_one_attempt_with_bounded_timeouts() -> None:
    adapter = make_adapter(max_workers=3, read_timeout_s=7.0)
    config = adapter._client.meta.config
    try:
        assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
        assert (config.connect_timeout, config.read_timeout) == (0.5, 7.0)
        assert config.max_pool_connections == 3
        assert adapter._client.meta.region_name == "us-east-1"
        assert adapter._client.meta.endpoint_url == UNREACHABLE
    finally:
        await adapter.close()
    await adapter.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await adapter.send(message())

"""FCM HTTP v1 answers, as Google sends them, turned into the ``Outcome`` the worker acts on; plus the
pure request builder (``build_body``: ttl, priority, data strings) the adapter sends."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, cast

import aiohttp
import pytest
from google.auth import exceptions as google_exceptions

from consumers.delivery.fcm import (
    MAX_TTL_S,
    AccessToken,
    build_body,
    classify,
    classify_exception,
    ttl_seconds,
)
from consumers.delivery.outcome import Outcome, Status

P, R = Status.PERMANENT, Status.RETRY
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def envelope(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def fcm(error_code: str) -> dict[str, str]:
    return {"@type": FCM_ERROR, "errorCode": error_code}


# (HTTP status, body, headers, expected status, reason, deactivate_target, retry_after_s): FCM's
# documented errorCodes with the envelopes FCM really sends, and the answers without an FcmError.
CASES: list[tuple[str, int, dict[str, Any] | bytes, dict[str, str], Status, str, bool, float | None]] = [
    (
        "unregistered",
        404,
        envelope(404, "NOT_FOUND", "Requested entity was not found.", fcm("UNREGISTERED")),
        {},
        P,
        "UNREGISTERED",
        True,
        None,
    ),
    (
        "sender id mismatch",
        403,
        envelope(403, "PERMISSION_DENIED", "SenderId mismatch", fcm("SENDER_ID_MISMATCH")),
        {},
        P,
        "SENDER_ID_MISMATCH",
        True,
        None,
    ),
    (
        "invalid argument, payload",
        400,
        envelope(400, "INVALID_ARGUMENT", "Message is too big", fcm("INVALID_ARGUMENT")),
        {},
        P,
        "INVALID_ARGUMENT",
        False,
        None,
    ),
    (
        "invalid argument, bad token",
        400,
        envelope(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            fcm("INVALID_ARGUMENT"),
        ),
        {},
        P,
        "INVALID_ARGUMENT",
        True,
        None,
    ),
    (
        "bad request field violation on the token",
        400,
        envelope(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.token'",
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": "Invalid value"}],
            },
        ),
        {},
        P,
        "INVALID_ARGUMENT",
        True,
        None,
    ),
    (
        "bad request field violation on data",
        400,
        envelope(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.data[0].value' (TYPE_STRING), 42",
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.data[0].value", "description": "Invalid value"}],
            },
        ),
        {},
        P,
        "INVALID_ARGUMENT",
        False,
        None,
    ),
    (
        "third-party auth error is a 401 that no token refresh fixes",
        401,
        envelope(
            401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", fcm("THIRD_PARTY_AUTH_ERROR")
        ),
        {},
        P,
        "THIRD_PARTY_AUTH_ERROR",
        False,
        None,
    ),
    (
        "quota exceeded with Retry-After",
        429,
        envelope(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Messages'.",
            fcm("QUOTA_EXCEEDED"),
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"subject": "x"}]},
        ),
        {"Retry-After": "120"},
        R,
        "QUOTA_EXCEEDED",
        False,
        120.0,
    ),
    (
        "quota exceeded without Retry-After waits Google's minimum minute",
        429,
        envelope(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", fcm("QUOTA_EXCEEDED")),
        {},
        R,
        "QUOTA_EXCEEDED",
        False,
        60.0,
    ),
    (
        "unavailable with Retry-After (header case does not matter)",
        503,
        envelope(503, "UNAVAILABLE", "The service is currently unavailable.", fcm("UNAVAILABLE")),
        {"retry-after": "7"},
        R,
        "UNAVAILABLE",
        False,
        7.0,
    ),
    (
        "unavailable without Retry-After",
        503,
        envelope(503, "UNAVAILABLE", "The service is currently unavailable.", fcm("UNAVAILABLE")),
        {},
        R,
        "UNAVAILABLE",
        False,
        None,
    ),
    (
        "internal",
        500,
        envelope(500, "INTERNAL", "Internal error encountered.", fcm("INTERNAL")),
        {},
        R,
        "INTERNAL",
        False,
        None,
    ),
    (
        "expired access token: bare 401",
        401,
        envelope(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
        {},
        R,
        "UNAUTHENTICATED",
        False,
        None,
    ),
    (
        "404 without UNREGISTERED (wrong project or URL) never deactivates",
        404,
        envelope(404, "NOT_FOUND", "Requested entity was not found."),
        {},
        P,
        "NOT_FOUND",
        False,
        None,
    ),
    (
        "403 permission denied on the project",
        403,
        envelope(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied"),
        {},
        P,
        "PERMISSION_DENIED",
        False,
        None,
    ),
    ("unknown 4xx without a body", 418, b"", {}, P, "418", False, None),
    ("unknown 5xx: HTML page from a proxy", 502, b"<html>Bad Gateway</html>", {}, R, "502", False, None),
    (
        "unknown errorCode with a 5xx",
        500,
        envelope(500, "INTERNAL", "?", fcm("UNSPECIFIED_ERROR")),
        {},
        R,
        "UNSPECIFIED_ERROR",
        False,
        None,
    ),
    ("429 without an envelope", 429, b"Too Many Requests", {"Retry-After": "3"}, R, "429", False, 3.0),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "reason", "deactivate", "retry_after"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_classify_errors(
    status: int,
    body: dict[str, Any] | bytes,
    headers: dict[str, str],
    expected: Status,
    reason: str,
    deactivate: bool,
    retry_after: float | None,
) -> None:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    for form in (raw, body):  # bytes off the wire, or an already-parsed dict
        outcome = classify(status, form, headers)
        assert (outcome.status, outcome.reason, outcome.deactivate_target, outcome.retry_after_s) == (
            expected,
            reason,
            deactivate,
            retry_after,
        )
        assert outcome.provider_message_id is None
        if isinstance(body, dict):  # Google's message reaches the detail, for the operator
            assert body["error"]["message"].partition(", ")[0] in (outcome.detail or "")


def test_detail_drops_the_value_google_quotes() -> None:
    """FCM quotes the offending field value, which may be a data value (personal): it stays out."""
    body = envelope(400, "INVALID_ARGUMENT", "Invalid value at 'message.data[0].value' (TYPE_STRING), 4242")
    assert classify(400, body).detail == (
        "FCM 400 INVALID_ARGUMENT: Invalid value at 'message.data[0].value' (TYPE_STRING)"
    )


def test_classify_success() -> None:
    name = "projects/notify-sandbox/messages/0:1500415314455276%31bd1c9631bd1c96"
    assert classify(200, json.dumps({"name": name}).encode(), {}) == Outcome.sent(name)
    assert classify(200, {"name": name}, None) == Outcome.sent(name)
    assert classify(200, b"", {}) == Outcome.sent(None)  # sent, even if the id is missing


def test_classify_retry_after_http_date() -> None:
    """RFC 9110 also allows an HTTP-date; ``now`` keeps classify pure. Garbage is ignored."""
    now = NOW.timestamp()
    date = {"Retry-After": "Sat, 01 Mar 2025 12:00:30 GMT"}
    assert classify(503, b"", date, now=now).retry_after_s == 30.0
    past = {"Retry-After": "Sat, 01 Mar 2025 11:00:00 GMT"}
    assert classify(503, b"", past, now=now).retry_after_s == 0.0
    assert classify(503, b"", {"Retry-After": "soon"}, now=now).retry_after_s is None


def google_error(cls: type[Exception], *args: Any, **kwargs: Any) -> Exception:
    # google-auth's exception constructors are unannotated: one place to call them from typed code.
    return cls(*args, **kwargs)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), "timeout"),
        (aiohttp.ServerTimeoutError(), "timeout"),
        (aiohttp.ClientConnectionError(), "connection_error"),
        (aiohttp.ServerDisconnectedError(), "connection_error"),
        (ConnectionRefusedError(), "connection_error"),
        (google_error(google_exceptions.TransportError, "down"), "oauth_unreachable"),
        # The token endpoint answered, but not about our key: busy, down, or a body we cannot read.
        (
            google_error(
                google_exceptions.RefreshError,
                "temporarily_unavailable: try later",
                {"error": "temporarily_unavailable"},
                retryable=True,
            ),
            "oauth_error",
        ),
        (
            google_error(
                google_exceptions.RefreshError,
                "server_error: None",
                {"error": "server_error"},
                retryable=True,
            ),
            "oauth_error",
        ),
        (
            google_error(google_exceptions.RefreshError, "<html>502 Bad Gateway</html>", retryable=True),
            "oauth_error",
        ),
        (google_error(google_exceptions.RefreshError, "<html>400 from a proxy</html>"), "oauth_error"),
        (
            google_error(google_exceptions.RefreshError, "token endpoint returned no access_token"),
            "oauth_error",
        ),
        # google-auth flags a 5xx as retryable whatever the body says: a refusal in a 503 is the outage's.
        (
            google_error(
                google_exceptions.RefreshError, "invalid_grant: x", {"error": "invalid_grant"}, retryable=True
            ),
            "oauth_error",
        ),
    ],
)
def test_classify_exception_is_retry(exc: BaseException, reason: str) -> None:
    outcome = classify_exception(exc)
    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (R, reason, False)


# The token endpoint refusing the service account (RFC 6749 5.2, in Google's words), as google-auth
# raises it: "<error>: <error_description>", then the decoded response. Permanent, like APNs 403
# InvalidProviderToken, SMTP 535 and SNS InvalidClientTokenId: retrying the same key cannot help.
@pytest.mark.parametrize(
    ("error", "description"),
    [
        ("invalid_grant", "Invalid JWT Signature."),  # wrong or deleted key
        ("invalid_grant", "Invalid grant: account not found"),
        ("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) ..."),  # clock skew
        ("invalid_client", "The OAuth client was not found."),
        ("unauthorized_client", "Client is unauthorized to retrieve access tokens using this method."),
        ("invalid_scope", "Invalid OAuth scope or ID token audience provided."),
        ("access_denied", "Account restricted"),
        ("invalid_request", "Missing required parameter: assertion"),
        ("unsupported_grant_type", "Invalid grant_type: "),
    ],
)
def test_refused_credentials_are_permanent_naming_the_refusal(error: str, description: str) -> None:
    text = f"{error}: {description}"
    exc = google_error(
        google_exceptions.RefreshError,
        text,
        {"error": error, "error_description": description},
        retryable=False,
    )
    outcome = classify_exception(exc)
    assert outcome == Outcome.permanent(f"oauth_{error}", detail=text)
    # Without the decoded response (google-auth's text only) the error is read from the text.
    assert classify_exception(google_error(google_exceptions.RefreshError, text)) == outcome


class _RefusingCredentials:
    """Stands in for service-account credentials whose every refresh raises ``error``."""

    token: str | None = None
    expiry: dt.datetime | None = None

    def __init__(self, error: Exception) -> None:
        self.error = error

    def refresh(self, _request: object) -> None:
        raise self.error


@pytest.mark.asyncio
@pytest.mark.parametrize("retryable", [True, False])
async def test_a_remembered_refusal_is_classified_like_the_first(retryable: bool) -> None:
    """Within the failure cooldown every send gets a copy of the last refusal: the same args and the
    same google-auth ``retryable`` flag, so the same outcome."""
    refusal = google_error(
        google_exceptions.RefreshError, "invalid_grant: x", {"error": "invalid_grant"}, retryable=retryable
    )
    token = AccessToken(cast(Any, _RefusingCredentials(refusal)), failure_cooldown_s=60.0)
    try:
        outcomes = []
        for _ in range(3):
            with pytest.raises(google_exceptions.RefreshError) as raised:
                await token.get()
            assert getattr(raised.value, "retryable", None) is retryable
            outcomes.append(classify_exception(raised.value))
    finally:
        await token.close()
    assert token.refreshes == 0
    assert len(set(outcomes)) == 1
    assert outcomes[0].status is (R if retryable else P)


def test_refresh_error_detail_is_googles_words() -> None:
    exc = google_error(
        google_exceptions.RefreshError,
        "invalid_grant: Invalid JWT Signature.",
        {"error": "invalid_grant"},
        retryable=False,
    )
    assert classify_exception(exc).detail == "invalid_grant: Invalid JWT Signature."


# --- build_body -------------------------------------------------------------------------------------


def message(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "delivery_id": "d-1",
        "target": "tok-1:APA91b",
        "title": "Hi",
        "body": "There",
        "data": {"order": "42"},
        "priority": "NORMAL",
        "expires_at": None,
    }
    return base | extra


def test_build_body_full_message() -> None:
    expires = NOW + dt.timedelta(hours=1)
    assert build_body(message(expires_at=expires, collapse_id="orders"), NOW) == {
        "message": {
            "token": "tok-1:APA91b",
            "notification": {"title": "Hi", "body": "There"},
            "data": {"order": "42"},
            "android": {"priority": "high", "ttl": "3600s", "collapse_key": "orders"},
        }
    }


@pytest.mark.parametrize(
    ("priority", "android"),
    [("CRITICAL", "high"), ("HIGH", "high"), ("NORMAL", "high"), ("UNKNOWN", "high"), ("LOW", "normal")],
)
def test_build_body_priority(priority: str, android: str) -> None:
    """Like APNs (10 unless LOW): notifications are user-visible, only LOW may wait for Doze."""
    assert build_body(message(priority=priority), NOW)["message"]["android"]["priority"] == android


@pytest.mark.parametrize(
    ("left", "ttl"),
    [
        (dt.timedelta(seconds=90), "90s"),
        (dt.timedelta(seconds=90, milliseconds=999), "90s"),  # whole seconds, rounded down
        (dt.timedelta(days=40), f"{MAX_TTL_S}s"),  # capped at FCM's 28 days
        (dt.timedelta(seconds=-5), "0s"),
    ],
)
def test_build_body_ttl(left: dt.timedelta, ttl: str) -> None:
    body = build_body(message(expires_at=NOW + left), NOW)
    assert body["message"]["android"]["ttl"] == ttl


def test_build_body_without_expiry_has_no_ttl() -> None:
    assert "ttl" not in build_body(message(), NOW)["message"]["android"]


def test_build_body_data_values_are_strings() -> None:
    """FCM rejects non-string data values: a stray one is stringified, never sent as a number."""
    body = build_body(message(data={"n": 42, "ok": True, "s": "x"}), NOW)
    assert body["message"]["data"] == {"n": "42", "ok": "True", "s": "x"}
    assert all(isinstance(v, str) for v in body["message"]["data"].values())


def test_build_body_data_only_and_empty_data() -> None:
    body = build_body(message(title=None, body=None, data={}), NOW)["message"]
    assert "notification" not in body
    assert "data" not in body
    assert build_body(message(body=None), NOW)["message"]["notification"] == {"title": "Hi"}


def test_ttl_seconds_naive_is_utc() -> None:
    naive = (NOW + dt.timedelta(seconds=10)).replace(tzinfo=None)
    assert ttl_seconds(naive, NOW) == 10
    assert ttl_seconds(None, NOW) is None

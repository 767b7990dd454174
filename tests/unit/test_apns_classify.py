"""Apple's APNs response table, row by row, as the ``Outcome`` the worker acts on; plus the pure helpers
the adapter builds requests from (apns-id derivation, payload, the shared provider token)."""

from __future__ import annotations

import jwt
import pytest
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from h2.exceptions import ProtocolError

from consumers.delivery.apns import (
    ProviderToken,
    apns_id_for,
    build_payload,
    classify,
    classify_exception,
)
from consumers.delivery.outcome import Outcome, Status
from sandboxes.tls import generate_es256_key

P, R = Status.PERMANENT, Status.RETRY

# (status, reason, expected status, deactivate_target): every reason of Apple's table.
APPLE_TABLE: list[tuple[int, str, Status, bool]] = [
    (400, "BadCollapseId", P, False),
    (400, "BadDeviceToken", P, True),
    (400, "BadExpirationDate", P, False),
    (400, "BadMessageId", P, False),
    (400, "BadPriority", P, False),
    (400, "BadTopic", P, False),
    (400, "DeviceTokenNotForTopic", P, True),
    (400, "DuplicateHeaders", P, False),
    (400, "IdleTimeout", R, False),
    (400, "InvalidPushType", P, False),
    (400, "MissingDeviceToken", P, False),
    (400, "MissingTopic", P, False),
    (400, "PayloadEmpty", P, False),
    (400, "TopicDisallowed", P, False),
    (403, "BadCertificate", P, False),
    (403, "BadCertificateEnvironment", P, False),
    (403, "ExpiredProviderToken", R, False),
    (403, "Forbidden", P, False),
    (403, "InvalidProviderToken", P, False),
    (403, "MissingProviderToken", P, False),
    (403, "UnrelatedKeyIdInToken", P, False),
    (403, "BadEnvironmentKeyIdInToken", P, False),
    (404, "BadPath", P, False),
    (405, "MethodNotAllowed", P, False),
    (410, "ExpiredToken", P, True),
    (410, "Unregistered", P, True),
    (413, "PayloadTooLarge", P, False),
    (429, "TooManyProviderTokenUpdates", R, False),
    (429, "TooManyRequests", R, False),
    (500, "InternalServerError", R, False),
    (503, "ServiceUnavailable", R, False),
    (503, "Shutdown", R, False),
]


@pytest.mark.parametrize(("status", "reason", "expected", "deactivate"), APPLE_TABLE)
def test_apple_table(status: int, reason: str, expected: Status, deactivate: bool) -> None:
    """Each documented reason maps to retry/permanent, and only dead tokens are deactivated."""
    for wire_status in (status, str(status)):  # aioapns reports the status as a string
        outcome = classify(wire_status, reason, None)
        assert (outcome.status, outcome.reason, outcome.deactivate_target) == (expected, reason, deactivate)
        assert outcome.provider_message_id is None


def test_success_carries_the_apns_id() -> None:
    """A 200 is SENT, with the apns-id as provider message id."""
    assert classify("200", None, None, apns_id="abc") == Outcome.sent("abc")


def test_gone_keeps_apple_timestamp_in_detail() -> None:
    """410 Unregistered reports when the token went inactive."""
    outcome = classify(410, "Unregistered", 1_700_000_000_123)
    assert outcome.deactivate_target
    assert "1700000000123" in (outcome.detail or "")


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (410, None, Outcome.permanent("410", deactivate_target=True, detail="APNs 410 410")),
        (400, "SomethingNew", Outcome.permanent("SomethingNew", detail="APNs 400 SomethingNew")),
        (502, None, Outcome.retry("502", detail="APNs 502 502")),
        (429, None, Outcome.retry("429", detail="APNs 429 429")),
        (302, None, Outcome.retry("302", detail="APNs 302 302")),
        ("", None, Outcome.retry("bad_response", detail="APNs status ''")),
    ],
)
def test_undocumented_answers(status: int | str, reason: str | None, expected: Outcome) -> None:
    """Unknown 4xx are permanent, 410 always deactivates, 5xx and non-APNs answers are retried."""
    assert classify(status, reason, None) == expected


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), "timeout"),
        (MaxAttemptsExceeded(), "connection_error"),
        (ConnectionClosed("x"), "connection_error"),
        (ApnsConnectionError(), "connection_error"),
        (ConnectionRefusedError(), "connection_error"),
        (ProtocolError("x"), "connection_error"),
    ],
)
def test_transport_failures_retry(exc: BaseException, reason: str) -> None:
    """No answer from APNs is always worth another try."""
    outcome = classify_exception(exc)
    assert (outcome.status, outcome.reason) == (Status.RETRY, reason)


def test_apns_id_is_a_stable_uuid_per_delivery() -> None:
    """Retries of one delivery carry one apns-id, pinned across releases (the namespace never changes)."""
    assert apns_id_for("d-1") == apns_id_for("d-1") == "7adb5360-0a92-5b7d-93c5-886c310fe370"
    assert apns_id_for("d-2") != apns_id_for("d-1")


def test_payload_keeps_aps_from_data() -> None:
    """Custom data sits beside ``aps`` and cannot overwrite it."""
    message = {"title": "T", "body": "B", "data": {"order": "42", "aps": "evil"}}
    assert build_payload(message) == {"order": "42", "aps": {"alert": {"title": "T", "body": "B"}}}


def test_provider_token_is_minted_every_fifty_minutes() -> None:
    """One JWT until its lifetime passes; ``expire`` re-mints only the token that was rejected."""
    key = generate_es256_key()
    now = [1_000_000.0]
    token = ProviderToken(key.private_pem, "KEY1234567", "TEAM123456", clock=lambda: now[0])
    first = token.get_header()
    now[0] += 49 * 60
    assert token.get_header() == first
    claims = jwt.decode(first.removeprefix("bearer "), key.public_pem, algorithms=["ES256"])
    assert claims == {"iss": "TEAM123456", "iat": 1_000_000}
    assert jwt.get_unverified_header(first.removeprefix("bearer "))["kid"] == "KEY1234567"
    now[0] += 60
    second = token.get_header()
    assert second != first
    token.expire(first)  # a late rejection of the old token must not discard the new one
    assert token.get_header() == second
    token.expire(second)
    assert token.get_header() not in {first, second}

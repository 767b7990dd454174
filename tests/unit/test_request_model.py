"""The SDK refuses bad requests with an error naming every bad field, and fills what it can."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notify_core.exceptions import InvalidRequestError
from notify_core.request_model import NotificationRequest


def valid(**overrides: Any) -> dict[str, Any]:
    return {
        "user_id": "u-1",
        "template_id": "order-shipped",
        "service": "orders",
        "category": "transactional",
        **overrides,
    }


def test_ids_and_timestamps_are_filled() -> None:
    a, b = NotificationRequest.parse(valid()), NotificationRequest.parse(valid())
    assert a.notification_id != b.notification_id
    assert a.created_at.tzinfo is not None
    assert a.created_at.microsecond % 1000 == 0


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        NotificationRequest.parse(valid(user_id="", service="Bad Name", channels=["pager"], prioriti="high"))
    fields = {path.split(".")[0] for path, _ in caught.value.problems}
    assert fields == {"user_id", "service", "channels", "prioriti"}
    assert "user_id" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channels": ["ios", "ios"]}, "channels"),
        ({"params": {"n": 2**63}}, "params"),
        ({"params": {"n": float("nan")}}, "params"),
        ({"params": {"n": [1, 2]}}, "params"),
        ({"locale": "english"}, "locale"),
        ({"send_at": "2030-01-01T00:00:00"}, "send_at"),
        ({"priority": "urgent"}, "priority"),
        ({"template_id": "has space"}, "template_id"),
    ],
)
def test_bad_values_are_refused(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError, match=field):
        NotificationRequest.parse(valid(**overrides))


def test_expiry_must_be_in_the_future_and_after_send_at() -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(InvalidRequestError, match="expires_at must be in the future"):
        NotificationRequest.parse(valid(expires_at=past))
    soon = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(InvalidRequestError, match="after send_at"):
        NotificationRequest.parse(valid(send_at=soon, expires_at=soon - timedelta(minutes=1)))


def test_batch_index_is_in_the_message() -> None:
    with pytest.raises(InvalidRequestError, match="request #7"):
        NotificationRequest.parse(valid(user_id=""), index=7)


def test_avro_round_trip_of_the_model() -> None:
    request = NotificationRequest.parse(
        valid(channels=["ios", "email"], priority="critical", params={"a": 1, "b": "x", "c": None, "d": 1.5})
    )
    record = request.to_avro()
    assert record["channels"] == ["IOS", "EMAIL"]
    assert record["priority"] == "CRITICAL"
    assert NotificationRequest.from_avro(record) == request

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from consumers.delivery.dead_letters import Selection, dlq_topic
from notify_cli.dlq_cmd import _when
from notify_core.settings import Settings

AT = datetime(2026, 5, 1, 12, tzinfo=UTC)


def letter(error_type: str = "BadDeviceToken", failed_at: datetime = AT) -> dict[str, object]:
    return {"error_type": error_type, "failed_at": failed_at}


@pytest.mark.parametrize(
    ("selection", "matches"),
    [
        (Selection(), True),
        (Selection(reason="BadDeviceToken"), True),
        (Selection(reason="attempts_exhausted"), False),
        (Selection(since=AT), True),  # since is inclusive
        (Selection(since=AT + timedelta(seconds=1)), False),
        (Selection(until=AT), False),  # until is exclusive
        (Selection(until=AT + timedelta(seconds=1)), True),
        (
            Selection(reason="BadDeviceToken", since=AT - timedelta(hours=1), until=AT + timedelta(hours=1)),
            True,
        ),
    ],
)
def test_selection(selection: Selection, matches: bool) -> None:
    assert selection.matches(letter()) is matches


def test_durations_count_back_from_now() -> None:
    before = datetime.now(UTC)
    assert (
        before - timedelta(hours=2, seconds=5)
        < _when("2h")
        <= before - timedelta(hours=2) + timedelta(seconds=5)
    )
    assert _when("2026-05-01T12:00:00+00:00") == AT


def test_a_time_without_zone_is_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="time zone"):
        _when("2026-05-01T12:00:00")


def test_sources_name_their_dead_letter_topics() -> None:
    settings = Settings(topic_prefix="x")
    assert dlq_topic(settings, "requests") == "x.requests.dlq"
    assert dlq_topic(settings, "ios") == "x.ios.dlq"
    with pytest.raises(ValueError, match="unknown dead-letter source"):
        dlq_topic(settings, "pager")

"""Routing policy from tables: channels, opt-outs, caps, quiet hours, scheduling, dedupe."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from consumers.router.policy import (
    RouteRequest,
    Suppression,
    dedupe_keys,
    delivery_id,
    is_duplicate,
    quiet_end,
    route,
)
from notify_core.topics import Channel
from notify_core.userdata.models import Category, Contact, Device, Preferences, QuietHours, User, UserContext

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
IOS, ANDROID, SMS, EMAIL = Channel.IOS, Channel.ANDROID, Channel.SMS, Channel.EMAIL

CONTEXT = UserContext(
    user=User("u1", "en", "UTC"),
    devices=(
        Device(1, IOS, "tok-a", "app"),
        Device(2, IOS, "tok-b", "app"),
        Device(3, ANDROID, "tok-c", "app"),
        Device(4, ANDROID, "tok-dead", "app", active=False),
    ),
    contacts=(Contact(10, EMAIL, "u1@example.com"), Contact(11, SMS, "+15555550100")),
)
REQUEST = RouteRequest("n-1", "u1", "marketing", "NORMAL", ())
MARKETING = Category("marketing")


def channels_of(decision_targets: tuple[object, ...]) -> list[str]:
    return sorted(t.channel.value for t in decision_targets)  # type: ignore[attr-defined]


def test_every_active_target_of_every_channel_when_none_requested() -> None:
    decision = route(REQUEST, CONTEXT, MARKETING, NOW, {})
    assert channels_of(decision.targets) == ["android", "email", "ios", "ios", "sms"]
    assert decision.suppressed == ()
    assert all(t.deliver_at is None for t in decision.targets)


def test_push_and_email_only_preferences_give_three_pushes_and_one_email() -> None:
    prefs = Preferences(choices={("marketing", SMS): False})
    decision = route(REQUEST, replace(CONTEXT, preferences=prefs), MARKETING, NOW, {})
    assert channels_of(decision.targets) == ["android", "email", "ios", "ios"]
    assert decision.suppressed == (Suppression(SMS, "opted_out"),)


@pytest.mark.parametrize(
    ("prefs", "category", "priority", "expected"),
    [
        (Preferences(unsubscribed=frozenset({EMAIL})), MARKETING, "NORMAL", "unsubscribed"),
        (Preferences(choices={("marketing", EMAIL): False}), MARKETING, "NORMAL", "opted_out"),
        # critical priority does not override an explicit opt-out
        (Preferences(choices={("marketing", EMAIL): False}), MARKETING, "CRITICAL", "opted_out"),
        # a mandatory category does
        (
            Preferences(choices={("security", EMAIL): False}),
            Category("security", mandatory=True),
            "NORMAL",
            None,
        ),
        (Preferences(unsubscribed=frozenset({EMAIL})), Category("security", mandatory=True), "NORMAL", None),
        # an opt-out for another category does not apply
        (Preferences(choices={("account", EMAIL): False}), MARKETING, "NORMAL", None),
    ],
)
def test_opt_outs(prefs: Preferences, category: Category, priority: str, expected: str | None) -> None:
    request = replace(REQUEST, category=category.name, priority=priority, channels=(EMAIL,))
    decision = route(request, replace(CONTEXT, preferences=prefs), category, NOW, {})
    if expected is None:
        assert [t.channel for t in decision.targets] == [EMAIL]
    else:
        assert decision.suppressed == (Suppression(EMAIL, expected),)
        assert decision.targets == ()


def test_channel_without_contact_is_suppressed() -> None:
    bare = replace(CONTEXT, contacts=(), devices=(Device(4, ANDROID, "x", "app", active=False),))
    decision = route(replace(REQUEST, channels=(ANDROID, SMS)), bare, MARKETING, NOW, {})
    assert decision.suppressed == (Suppression(ANDROID, "no_contact"), Suppression(SMS, "no_contact"))


@pytest.mark.parametrize(
    ("used", "priority", "capped"),
    [(0, "NORMAL", False), (2, "NORMAL", False), (3, "NORMAL", True), (9, "CRITICAL", False)],
)
def test_daily_caps(used: int, priority: str, capped: bool) -> None:
    category = Category("marketing", daily_caps={IOS: 3})
    request = replace(REQUEST, channels=(IOS, EMAIL), priority=priority)
    decision = route(request, CONTEXT, category, NOW, {IOS: used, EMAIL: 100})
    assert (Suppression(IOS, "capped") in decision.suppressed) is capped
    assert EMAIL in {t.channel for t in decision.targets}


def test_expired_and_unknown_user_are_dropped() -> None:
    assert route(replace(REQUEST, expires_at=NOW), CONTEXT, MARKETING, NOW, {}).dropped == "expired"
    assert route(REQUEST, None, MARKETING, NOW, {}).dropped == "unknown_user"


QUIET = QuietHours(time(22, 0), time(7, 0))


@pytest.mark.parametrize(
    ("moment", "zone", "expected"),
    [
        (datetime(2026, 6, 1, 23, 30, tzinfo=UTC), "UTC", datetime(2026, 6, 2, 7, 0, tzinfo=UTC)),
        (datetime(2026, 6, 2, 3, 0, tzinfo=UTC), "UTC", datetime(2026, 6, 2, 7, 0, tzinfo=UTC)),
        (datetime(2026, 6, 2, 7, 0, tzinfo=UTC), "UTC", None),
        (datetime(2026, 6, 1, 21, 59, tzinfo=UTC), "UTC", None),
        # 23:00 in Paris (UTC+2 in June) is 21:00 UTC; quiet ends 07:00 Paris = 05:00 UTC
        (datetime(2026, 6, 1, 21, 0, tzinfo=UTC), "Europe/Paris", datetime(2026, 6, 2, 5, 0, tzinfo=UTC)),
    ],
)
def test_quiet_end(moment: datetime, zone: str, expected: datetime | None) -> None:
    assert quiet_end(moment, QUIET, zone) == expected


def test_daytime_quiet_window() -> None:
    lunch = QuietHours(time(12, 0), time(13, 0))
    assert quiet_end(NOW, lunch, "UTC") == datetime(2026, 6, 1, 13, 0, tzinfo=UTC)


def test_quiet_hours_defer_push_and_sms_but_not_email_nor_critical() -> None:
    night = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)
    quiet_ctx = replace(CONTEXT, preferences=Preferences(quiet_hours=QUIET))
    decision = route(REQUEST, quiet_ctx, MARKETING, night, {})
    morning = datetime(2026, 6, 2, 7, 0, tzinfo=UTC)
    by_channel = {t.channel: t.deliver_at for t in decision.targets}
    assert by_channel == {IOS: morning, ANDROID: morning, SMS: morning, EMAIL: None}
    critical = route(replace(REQUEST, priority="CRITICAL"), quiet_ctx, MARKETING, night, {})
    assert all(t.deliver_at is None for t in critical.targets)


def test_send_at_in_the_future_waits_and_respects_quiet_hours_then() -> None:
    later = NOW + timedelta(hours=2)
    decision = route(replace(REQUEST, send_at=later, channels=(EMAIL,)), CONTEXT, MARKETING, NOW, {})
    assert decision.targets[0].deliver_at == later
    past = route(
        replace(REQUEST, send_at=NOW - timedelta(hours=1), channels=(EMAIL,)), CONTEXT, MARKETING, NOW, {}
    )
    assert past.targets[0].deliver_at is None
    at_night = datetime(2026, 6, 1, 23, 0, tzinfo=UTC)
    quiet_ctx = replace(CONTEXT, preferences=Preferences(quiet_hours=QUIET))
    deferred = route(replace(REQUEST, send_at=at_night, channels=(SMS,)), quiet_ctx, MARKETING, NOW, {})
    assert deferred.targets[0].deliver_at == datetime(2026, 6, 2, 7, 0, tzinfo=UTC)


def test_delivery_ids_are_stable_and_distinct() -> None:
    first = route(REQUEST, CONTEXT, MARKETING, NOW, {})
    again = route(REQUEST, CONTEXT, MARKETING, NOW + timedelta(minutes=5), {})
    assert [t.delivery_id for t in first.targets] == [t.delivery_id for t in again.targets]
    assert len({t.delivery_id for t in first.targets}) == len(first.targets)
    assert delivery_id("n-1", IOS, "device:1") != delivery_id("n-2", IOS, "device:1")


def test_dedupe_keys_and_own_replay_is_not_a_duplicate() -> None:
    keys = dedupe_keys("n-1", "orders", "k-9")
    assert keys == ["id:n-1", "idem:orders:k-9"]
    assert dedupe_keys("n-1", "orders", None) == ["id:n-1"]
    seen = {"id:n-1": (0, 41)}
    assert not is_duplicate(keys, seen, (0, 41))  # our own aborted attempt, replayed
    assert is_duplicate(keys, seen, (0, 99))
    assert is_duplicate(["id:n-2", "idem:orders:k-9"], {"idem:orders:k-9": (2, 5)}, (0, 1))
    assert not is_duplicate(["id:n-3"], seen, (0, 1))

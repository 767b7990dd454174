"""The batch plan's outcome rows: what the status endpoint will say the router decided, per request."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from consumers.router.batch import Lookups, Parsed, Rejected, plan_batch
from consumers.router.outcome import MIXED_REASONS, OutcomeRow
from consumers.router.render import Renderer
from notify_core.codec import CHANNEL_MESSAGE
from notify_core.events import Failure
from notify_core.records import Record
from notify_core.request_model import NotificationRequest
from notify_core.status import ChannelStatus
from notify_core.topics import Channel, TopicNames
from notify_core.userdata.models import (
    Contact,
    Device,
    Preferences,
    QuietHours,
    Template,
    User,
    UserContext,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
IOS, ANDROID, SMS, EMAIL = Channel.IOS, Channel.ANDROID, Channel.SMS, Channel.EMAIL
NAMES = TopicNames("t")
CONTEXT = UserContext(
    user=User("u1", "en", "UTC"),
    devices=(Device(1, IOS, "tok-a", "app"), Device(2, IOS, "tok-b", "app")),
    contacts=(Contact(10, EMAIL, "u1@example.com"), Contact(11, SMS, "+15555550100")),
)
TEMPLATES = {
    "welcome": [
        Template("welcome", IOS, "en", 1, title="Hi {{ name }}", body="Hello {{ name }}"),
        Template("welcome", ANDROID, "en", 1, title="Hi {{ name }}", body="Hello {{ name }}"),
        Template("welcome", SMS, "en", 1, sms_text="Hi {{ name }}"),
        Template("welcome", EMAIL, "en", 1, email_subject="Hi {{ name }}", email_text="Hello {{ name }}"),
    ],
    "sms-only": [Template("sms-only", SMS, "en", 1, sms_text="Hi {{ name }}")],
}


def request(**overrides: Any) -> NotificationRequest:
    fields: dict[str, Any] = {
        "user_id": "u1",
        "template_id": "welcome",
        "service": "signup",
        "category": "account",
        "params": {"name": "Ada"},
        "created_at": NOW - timedelta(minutes=5),
        **overrides,
    }
    return NotificationRequest.parse(fields)


def parsed(req: NotificationRequest, offset: int = 0, partition: int = 0) -> Parsed:
    return Parsed(Record("t.requests", partition, offset, b"u1", b"avro"), req)


def lookups(context: UserContext | None = CONTEXT, seen: dict[str, tuple[int, int]] | None = None) -> Lookups:
    contexts = {} if context is None else {context.user.user_id: context}
    return Lookups(seen=seen or {}, contexts=contexts, categories={}, templates=TEMPLATES, cap_usage={})


def plan(items: list[Parsed | Rejected], found: Lookups | None = None) -> list[OutcomeRow]:
    return plan_batch(items, found or lookups(), names=NAMES, renderer=Renderer(), now=NOW).outcome_rows


def states(row: OutcomeRow) -> list[tuple[str, str, str | None]]:
    return sorted((c.channel, c.state, c.reason) for c in row.channels)


def test_a_routed_request_lists_every_delivery_with_the_ids_of_its_channel_messages() -> None:
    """Routed: one channel entry per delivery, carrying the delivery id its channel message has,
    and the request's own fields and record position."""
    req = request(channels=["ios", "email"])
    result = plan_batch(
        [parsed(req, offset=42, partition=2)], lookups(), names=NAMES, renderer=Renderer(), now=NOW
    )
    [row] = result.outcome_rows
    assert (row.outcome, row.reason) == ("routed", None)
    assert (row.notification_id, row.service, row.user_id, row.category, row.template_id) == (
        str(req.notification_id),
        "signup",
        "u1",
        "account",
        "welcome",
    )
    assert (row.source_partition, row.source_offset) == (2, 42)
    assert states(row) == [("email", "routed", None), ("ios", "routed", None), ("ios", "routed", None)]
    messages = {o.record["delivery_id"] for o in result.outputs if o.schema == CHANNEL_MESSAGE}
    assert {c.delivery_id for c in row.channels} == messages
    assert all(c.deliver_at is None for c in row.channels)


def test_channels_suppressed_beside_routed_ones_say_why() -> None:
    """An opted-out SMS, a push platform without a device and an e-mail without a template are
    listed with their reasons, and the request still counts as routed."""
    prefs = Preferences(choices={("account", SMS): False})
    emailless = {**TEMPLATES, "welcome": [t for t in TEMPLATES["welcome"] if t.channel != EMAIL]}
    found = replace(lookups(replace(CONTEXT, preferences=prefs)), templates=emailless)
    [row] = plan([parsed(request())], found)
    assert row.outcome == "routed"
    assert states(row) == [
        ("android", "suppressed", "no_contact"),
        ("email", "suppressed", "no_template"),
        ("ios", "routed", None),
        ("ios", "routed", None),
        ("sms", "suppressed", "opted_out"),
    ]
    assert all(c.delivery_id is None for c in row.channels if c.state == "suppressed")


@pytest.mark.parametrize(
    ("prefs", "channels", "reason"),
    [
        (Preferences(unsubscribed=frozenset(Channel)), [], "unsubscribed"),
        (
            Preferences(choices={("account", SMS): False, ("account", EMAIL): False}),
            ["sms", "email"],
            "opted_out",
        ),
        (Preferences(choices={("account", SMS): False}), ["sms", "android"], MIXED_REASONS),
    ],
)
def test_a_request_with_every_channel_suppressed_is_suppressed_for_their_reason(
    prefs: Preferences, channels: list[str], reason: str
) -> None:
    """No delivery left: the whole request is suppressed, for the channels' common reason, or
    ``all_channels_suppressed`` when they differ; each channel keeps its own reason."""
    [row] = plan([parsed(request(channels=channels))], lookups(replace(CONTEXT, preferences=prefs)))
    assert (row.outcome, row.reason) == ("suppressed", reason)
    assert all(c.state == "suppressed" and c.reason for c in row.channels)
    assert len(row.channels) == (len(channels) or len(Channel))


def test_whole_request_suppressions_expired_unknown_user_and_duplicate() -> None:
    """Expired, unknown user and duplicate (seen at another position, or earlier in the same
    batch) suppress the request as a whole, with no channel entries."""
    expired = request(expires_at=NOW - timedelta(minutes=1))
    dup_of_earlier = request()
    same_id = request(notification_id=str(dup_of_earlier.notification_id))
    seen_before = request()
    items: list[Parsed | Rejected] = [
        parsed(expired, 0),
        parsed(dup_of_earlier, 1),
        parsed(same_id, 2),
        parsed(seen_before, 3),
    ]
    rows = plan(items, lookups(seen={f"id:{seen_before.notification_id}": (5, 900)}))
    assert [(r.outcome, r.reason, r.channels) for r in rows] == [
        ("suppressed", "expired", ()),
        ("routed", None, rows[1].channels),
        ("suppressed", "duplicate", ()),
        ("suppressed", "duplicate", ()),
    ]
    assert rows[1].notification_id == rows[2].notification_id  # the store keeps the first: see state.py
    [unknown] = plan([parsed(request(user_id="nobody"))], lookups(None))
    assert (unknown.outcome, unknown.reason) == ("suppressed", "unknown_user")


def test_a_request_replayed_at_its_own_position_is_planned_as_itself_not_a_duplicate() -> None:
    """The dedupe mark left by an aborted attempt at the same position: the row is routed again."""
    req = request(channels=["sms"])
    [row] = plan([parsed(req, 7, 1)], lookups(seen={f"id:{req.notification_id}": (1, 7)}))
    assert (row.outcome, states(row)) == ("routed", [("sms", "routed", None)])


def test_a_rejected_request_keeps_no_channel_of_what_it_had_planned() -> None:
    """A render error after another channel was planned undoes that channel: rejected, with the
    error type as the reason and no channel entries."""
    broken = {
        **TEMPLATES,
        "welcome": [*TEMPLATES["welcome"][:3], replace(TEMPLATES["welcome"][3], email_text="{{ x.y }}")],
    }
    [row] = plan([parsed(request(channels=["sms", "email"]))], replace(lookups(), templates=broken))
    assert (row.outcome, row.reason, row.channels) == ("rejected", "missing_param", ())
    [missing] = plan([parsed(request(params={}))])
    assert (missing.outcome, missing.reason) == ("rejected", "missing_param")


def test_an_unexpected_exception_rejects_the_request_as_internal_error_and_the_next_is_routed() -> None:
    """The total catch: the failed request's partial outcome is undone, the next one is unaffected."""

    class Flaky(Renderer):
        def render(self, template: Template, params: Any) -> Any:
            if template.channel == EMAIL:
                raise RuntimeError("boom")
            return super().render(template, params)

    items: list[Parsed | Rejected] = [
        parsed(request(channels=["sms", "email"]), 0),
        parsed(request(channels=["sms"]), 1),
    ]
    rows = plan_batch(items, lookups(), names=NAMES, renderer=Flaky(), now=NOW).outcome_rows
    assert [(r.outcome, r.reason) for r in rows] == [("rejected", "internal_error"), ("routed", None)]
    assert rows[0].channels == ()


def test_a_record_that_did_not_parse_has_no_outcome_row() -> None:
    """No notification id to file it under: the dead letter is all there is."""
    bad = Rejected(Record("t.requests", 0, 0, None, b"junk"), Failure("decode_error", "not avro"))
    assert plan([bad, parsed(request(channels=["sms"]), 1)])[0].outcome == "routed"
    assert plan([bad]) == []


def test_quiet_hours_defer_push_and_sms_with_their_due_time_and_email_goes_now() -> None:
    """Deferred deliveries are listed as deferred with ``deliver_at``; the request is routed."""
    quiet = Preferences(quiet_hours=QuietHours(time(11, 0), time(13, 0)))
    [row] = plan([parsed(request())], lookups(replace(CONTEXT, preferences=quiet)))
    assert row.outcome == "routed"
    due = NOW.replace(hour=13)
    assert sorted((c.channel, c.state, c.deliver_at) for c in row.channels if c.state != "suppressed") == [
        ("email", "routed", None),
        ("ios", "deferred", due),
        ("ios", "deferred", due),
        ("sms", "deferred", due),
    ]


def test_channel_entries_round_trip_through_their_json_form() -> None:
    """What the router writes into ``channels`` reads back as the same values."""
    entries = [
        ChannelStatus("sms", "deferred", str(uuid.uuid4()), None, NOW),
        ChannelStatus("email", "suppressed", reason="opted_out"),
    ]
    assert [ChannelStatus.from_json(c.to_json()) for c in entries] == entries
    assert entries[0].to_json()["deliver_at"] == "2026-06-01T12:00:00+00:00"

"""The router's analytics events (notification_event v2): template, locale and the request's time.

ROUTED names the template it rendered and that template's locale (after any fallback); SUPPRESSED
names the request's template and the locale it would have been rendered in, when the user is known.
Both carry the request's ``created_at`` as ``requested_at``, so request-to-provider latency can be
computed from the events alone.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.router.batch import Lookups, Parsed, plan_batch
from consumers.router.render import Renderer
from notify_core.codec import EVENT, default_codec
from notify_core.records import Record
from notify_core.request_model import NotificationRequest
from notify_core.topics import Channel, TopicNames
from notify_core.userdata.models import Contact, Device, Preferences, Template, User, UserContext

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(minutes=5, milliseconds=250)
IOS, ANDROID, SMS, EMAIL = Channel.IOS, Channel.ANDROID, Channel.SMS, Channel.EMAIL
NAMES = TopicNames("t")
CONTEXT = UserContext(
    user=User("u1", "fr-CA", "UTC"),
    devices=(Device(1, IOS, "tok-a", "app"),),
    contacts=(Contact(10, EMAIL, "u1@example.com"), Contact(11, SMS, "+15555550100")),
)
# iOS has a French template, e-mail only an English one (the fallback), SMS none at all.
TEMPLATES = {
    "welcome": [
        Template("welcome", IOS, "fr", 1, title="Salut {{ name }}", body="Bonjour {{ name }}"),
        Template("welcome", IOS, "en", 1, title="Hi {{ name }}", body="Hello {{ name }}"),
        Template("welcome", EMAIL, "en", 2, email_subject="Hi {{ name }}", email_text="Hello {{ name }}"),
    ],
}


def request(**overrides: Any) -> NotificationRequest:
    fields: dict[str, Any] = {
        "user_id": "u1",
        "template_id": "welcome",
        "service": "signup",
        "category": "account",
        "params": {"name": "Ada"},
        "created_at": CREATED,
        **overrides,
    }
    return NotificationRequest.parse(fields)


def events(req: NotificationRequest, context: UserContext | None = CONTEXT) -> list[dict[str, Any]]:
    """The events the plan for ``req`` emits, each encoded and decoded as the topic's readers see it."""
    contexts = {} if context is None else {context.user.user_id: context}
    found = Lookups(seen={}, contexts=contexts, categories={}, templates=TEMPLATES, cap_usage={})
    item = Parsed(Record("t.requests", 0, 7, b"u1", b"avro"), req)
    plan = plan_batch([item], found, names=NAMES, renderer=Renderer(), now=NOW)
    codec = default_codec()
    return [codec.decode(codec.encode(EVENT, o.record), EVENT) for o in plan.outputs if o.schema == EVENT]


def by_channel(found: list[dict[str, Any]]) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(e["event_type"], e["channel"]): e for e in found}


def test_routed_events_name_the_rendered_template_its_locale_and_the_request_time() -> None:
    """ROUTED: template_id, the chosen template's locale (fr for iOS; the en fallback for e-mail,
    the user being fr-CA) and requested_at equal to the request's created_at, to the millisecond."""
    found = by_channel(events(request(channels=["ios", "email"])))
    ios, email = found[("ROUTED", "IOS")], found[("ROUTED", "EMAIL")]
    assert (ios["template_id"], ios["locale"], ios["requested_at"]) == ("welcome", "fr", CREATED)
    assert (email["template_id"], email["locale"], email["requested_at"]) == ("welcome", "en", CREATED)
    assert ios["occurred_at"] == email["occurred_at"] == NOW


def test_suppressed_channels_name_the_template_and_the_locale_asked_for() -> None:
    """SUPPRESSED per channel (opted_out, no_contact, no_template): the request's template_id, its
    requested_at, and the locale the content would have been rendered in (the user's: fr-CA)."""
    prefs = Preferences(choices={("account", EMAIL): False})
    found = by_channel(events(request(), replace(CONTEXT, preferences=prefs)))
    suppressed = {k: v for k, v in found.items() if k[0] == "SUPPRESSED"}
    assert {k[1]: v["reason"] for k, v in suppressed.items()} == {
        "ANDROID": "no_contact",
        "EMAIL": "opted_out",
        "SMS": "no_template",
    }
    for e in suppressed.values():
        assert (e["template_id"], e["locale"], e["requested_at"]) == ("welcome", "fr-CA", CREATED)
    assert found[("ROUTED", "IOS")]["locale"] == "fr"


def test_a_request_locale_override_is_the_suppressions_locale() -> None:
    """A request that names its locale is suppressed under that locale, not the user's."""
    prefs = Preferences(unsubscribed=frozenset(Channel))
    found = events(request(locale="pt-BR"), replace(CONTEXT, preferences=prefs))
    assert len(found) == len(Channel)
    assert {(e["event_type"], e["reason"], e["locale"]) for e in found} == {
        ("SUPPRESSED", "unsubscribed", "pt-BR")
    }


def test_an_unknown_user_has_no_locale_but_the_template_and_time() -> None:
    """unknown_user: nothing says which locale it would have been; template and time are known."""
    [only] = events(request(), context=None)
    assert (only["event_type"], only["reason"]) == ("SUPPRESSED", "unknown_user")
    assert (only["template_id"], only["locale"], only["requested_at"]) == ("welcome", None, CREATED)


def test_an_invalid_request_is_suppressed_with_its_template_and_time() -> None:
    """A request that cannot render (a missing parameter) is SUPPRESSED as invalid, and still says
    which template, locale and request time it was."""
    [only] = events(request(params={}, channels=["ios"]))
    assert (only["event_type"], only["reason"], only["attributes"]) == (
        "SUPPRESSED",
        "invalid",
        {"error_type": "missing_param"},
    )
    assert (only["template_id"], only["locale"], only["requested_at"]) == ("welcome", "fr-CA", CREATED)

"""``BatchPlan.origins``: every output of a batch is tied to the request record it was planned for, so
the router can give each record it writes the trace context of that request (and of no other)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import groupby

from consumers.router.batch import Lookups, Parsed, Rejected, plan_batch
from consumers.router.render import Renderer
from notify_core.events import Failure
from notify_core.records import Record
from notify_core.request_model import NotificationRequest
from notify_core.topics import Channel, TopicNames
from notify_core.userdata.models import Contact, Device, Template, User, UserContext

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NAMES = TopicNames("t")
CONTEXTS = {
    user: UserContext(
        user=User(user, "en", "UTC"),
        devices=(Device(1, Channel.IOS, f"tok-{user}", "app"),),
        contacts=(Contact(10, Channel.EMAIL, f"{user}@example.com"),),
    )
    for user in ("u1", "u2")
}
TEMPLATES = {
    "hello": [
        Template("hello", Channel.IOS, "en", 1, title="Hi", body="Hello"),
        Template("hello", Channel.EMAIL, "en", 1, email_subject="Hi", email_text="Hello"),
    ]
}
LOOKUPS = Lookups(seen={}, contexts=CONTEXTS, categories={}, templates=TEMPLATES, cap_usage={})


def parsed(offset: int, user_id: str, **overrides: object) -> Parsed:
    fields = {"user_id": user_id, "template_id": "hello", "service": "s", "category": "c", **overrides}
    return Parsed(
        Record("t.requests", 0, offset, user_id.encode(), b"avro"), NotificationRequest.parse(fields)
    )


def test_each_output_names_the_record_of_its_own_request() -> None:
    """Two routed requests (two deliveries and two ROUTED events each), an undecodable record (its dead
    letter) and a request to a missing template (suppressed): one origin per output, in order, and
    every output of a request points at that request's record."""
    first, second = parsed(1, "u1"), parsed(2, "u2")
    broken = Rejected(Record("t.requests", 0, 3, None, b"junk"), Failure("decode_error", "bad"))
    missing = parsed(4, "u1", template_id="nope")
    plan = plan_batch([first, broken, second, missing], LOOKUPS, names=NAMES, renderer=Renderer(), now=NOW)

    assert len(plan.origins) == len(plan.outputs)
    owners = [origin.offset for origin in plan.origins]
    assert [offset for offset, _ in groupby(owners)] == [1, 3, 2, 4]  # request by request, in input order
    mine = {
        o: [out for out, origin in zip(plan.outputs, plan.origins, strict=True) if origin.offset == o]
        for o in (1, 2, 3, 4)
    }
    for offset, request in ((1, first), (2, second)):
        assert {out.topic for out in mine[offset]} == {"t.ios", "t.email", "t.events"}
        assert {out.record["notification_id"] for out in mine[offset]} == {
            str(request.request.notification_id)
        }
    assert [out.topic for out in mine[3]] == ["t.requests.dlq"]
    assert {out.topic for out in mine[4]} == {"t.events"}  # SUPPRESSED no_template, per channel


def test_a_request_that_fails_half_way_owns_only_what_it_left_behind() -> None:
    """A render that raises undoes the request's partial outputs: the origins still line up, and its
    dead letter and SUPPRESSED event are its own."""

    class Exploding(Renderer):
        def render(self, template: Template, params: object) -> object:  # type: ignore[override]
            raise RuntimeError("boom")

    plan = plan_batch([parsed(1, "u1"), parsed(2, "u2")], LOOKUPS, names=NAMES, renderer=Exploding(), now=NOW)
    assert len(plan.origins) == len(plan.outputs) == 4  # per request: a dead letter and an event
    assert [o.offset for o in plan.origins] == [1, 1, 2, 2]

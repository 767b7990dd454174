"""What ``GET /v1/notifications/{id}`` will read: the real router's recorded outcome and a real
worker's delivery log, through ``notify_core.status.lookup_status``, on the real stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from consumers.delivery.sms import SmsAdapter
from consumers.router.app import Router, RouterStats
from consumers.router.outcome import OutcomeRow
from consumers.router.state import RouterState
from notify_core.db.connect import connect, make_pool
from notify_core.settings import Settings
from notify_core.status import ChannelStatus, lookup_status
from notify_core.topics import Channel
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient
from sandboxes.sns import SnsSandbox
from tests.delivery_harness import delivery_env

pytestmark = pytest.mark.integration
Pool = ConnectionPool[psycopg.Connection[Any]]
WINDOW = timedelta(days=7)


@pytest.fixture
def routed(settings: Settings, db_schema: tuple[Settings, str]) -> Iterator[tuple[Settings, str, Pool]]:
    """(settings with a router group of this test's own, schema, pool): the schema has the templates."""
    schema = db_schema[1]
    mine = settings.model_copy(update={"router_group": f"router-{uuid.uuid4().hex[:8]}"})
    pool = make_pool(mine, schema=schema, min_size=1, max_size=2)
    repo = UserDataRepository(pool)
    for channel in (Channel.SMS, Channel.EMAIL):
        repo.put_template(
            Template(
                "welcome",
                channel,
                "en",
                1,
                sms_text="Hi {{ name }}",
                email_subject="Welcome {{ name }}",
                email_text="Hello {{ name }}",
            )
        )
    yield mine, schema, pool
    pool.close()


@pytest.fixture
def sns() -> Iterator[SnsSandbox]:
    box = SnsSandbox.run_in_thread(port=0)
    yield box
    box.stop()


def run_router(settings: Settings, schema: str, pool: Pool) -> RouterStats:
    router = Router(settings, lambda: connect(settings, schema=schema), UserDataRepository(pool))
    return router.run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120)


def request(user_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "template_id": "welcome",
        "service": "signup",
        "category": "account",
        "params": {"name": "Ada"},
        **overrides,
    }


@pytest.mark.asyncio
async def test_status_shows_the_routed_decision_and_the_workers_sent_delivery_to_its_own_service_only(
    routed: tuple[Settings, str, Pool], sns: SnsSandbox
) -> None:
    """Router, then SMS worker against the SNS sandbox, both real: the sender's lookup shows the
    request routed and its delivery sent with the provider's message id; a re-send of the same id
    is suppressed as a duplicate without replacing that; an opted-out request shows its reasons;
    another service's lookup, an unknown id and a non-UUID all give None."""
    settings, schema, pool = routed
    repo = UserDataRepository(pool)
    repo.upsert_user("u-ok")
    repo.add_phone("u-ok", "+12015550123")
    repo.upsert_user("u-out")
    repo.add_email("u-out", "u-out@example.com")
    repo.add_phone("u-out", "+12015550100")
    for channel in (Channel.SMS, Channel.EMAIL):
        repo.set_preference("u-out", "account", channel, opted_in=False)
    with NotificationClient(settings) as client:
        sent = client.send(request("u-ok", channels=["sms"]))
        client.send(request("u-ok", channels=["sms"], notification_id=sent.notification_id))
        out = client.send(request("u-out", channels=["sms", "email"]))
    routing = await asyncio.to_thread(run_router, settings, schema, pool)
    assert routing.decisions == {"routed": 1, "suppressed:duplicate": 1, "suppressed:opted_out": 2}

    async with delivery_env(settings, schema, Channel.SMS) as env:
        adapter = SmsAdapter(
            endpoint_url=sns.endpoint,
            region="us-east-1",
            access_key_id="testing",
            secret_access_key="testing",
            sender_id="NOTIFY",
        )
        stats = await env.run(adapter)
    assert stats.sent == 1
    [accepted] = [r for r in sns.recorder.all() if r.target == "+12015550123"]

    status = lookup_status(pool, sent.notification_id, "signup")
    assert status is not None
    assert (status.outcome, status.reason, status.user_id, status.template_id) == (
        "routed",
        None,
        "u-ok",
        "welcome",
    )
    [entry] = status.channels
    assert (entry.channel, entry.state, entry.reason) == ("sms", "routed", None)
    [delivery] = status.deliveries
    assert (delivery.delivery_id, delivery.channel) == (entry.delivery_id, "sms")
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, None)
    assert delivery.provider_message_id == accepted.payload["message_id"]
    assert delivery.provider_message_id
    body = status.to_json()
    assert body == {
        "notification_id": sent.notification_id,
        "service": "signup",
        "user_id": "u-ok",
        "category": "account",
        "template_id": "welcome",
        "outcome": "routed",
        "reason": None,
        "decided_at": body["decided_at"],
        "channels": [
            {
                "channel": "sms",
                "state": "routed",
                "delivery_id": entry.delivery_id,
                "reason": None,
                "deliver_at": None,
            }
        ],
        "deliveries": [
            {
                "delivery_id": entry.delivery_id,
                "channel": "sms",
                "status": "sent",
                "attempts": 1,
                "last_error": None,
                "provider_message_id": delivery.provider_message_id,
                "sent_at": body["deliveries"][0]["sent_at"],
                "updated_at": body["deliveries"][0]["updated_at"],
            }
        ],
    }
    assert datetime.fromisoformat(body["deliveries"][0]["sent_at"]) == delivery.sent_at
    assert datetime.fromisoformat(body["decided_at"]) == status.decided_at

    suppressed = lookup_status(pool, out.notification_id, "signup")
    assert suppressed is not None
    assert (suppressed.outcome, suppressed.reason, suppressed.deliveries) == ("suppressed", "opted_out", ())
    assert sorted((c.channel, c.state, c.reason) for c in suppressed.channels) == [
        ("email", "suppressed", "opted_out"),
        ("sms", "suppressed", "opted_out"),
    ]

    assert lookup_status(pool, sent.notification_id, "billing") is None
    assert lookup_status(pool, str(uuid.uuid4()), "signup") is None
    assert lookup_status(pool, "not-a-uuid", "signup") is None
    assert lookup_status(pool, sent.notification_id.upper(), "signup") == status


def outcome(nid: str, outcome: str, reason: str | None, offset: int) -> OutcomeRow:
    channels = (ChannelStatus("sms", "routed", str(uuid.uuid4())),) if outcome == "routed" else ()
    return OutcomeRow(nid, "signup", "u-1", "account", "welcome", outcome, reason, channels, 0, offset)


def test_a_replay_rewrites_its_own_outcome_and_a_duplicate_never_replaces_the_first(
    db_schema: tuple[Settings, str],
) -> None:
    """Keyed by notification id: the same record decided again replaces its row (the decision
    whose Kafka transaction commits); another record with the id does not; a rejection gives way
    to a later copy; past the dedupe window the id is new."""
    settings, schema = db_schema
    now = datetime.now(UTC)
    with connect(settings, schema=schema) as conn:
        state = RouterState(conn, dedupe_window=WINDOW)

        def shown(nid: str) -> tuple[str, str | None, int]:
            row = conn.execute(
                "select outcome, reason, source_offset from router_outcomes where notification_id = %s",
                (nid,),
            ).fetchone()
            assert row is not None
            return (row[0], row[1], row[2])

        routed, rejected, old = (str(uuid.uuid4()) for _ in range(3))
        state.record([], [], [], now, outcome_rows=[outcome(routed, "routed", None, 10)])
        state.record([], [], [], now, outcome_rows=[outcome(routed, "routed", None, 10)])  # replay
        assert shown(routed) == ("routed", None, 10)
        state.record([], [], [], now, outcome_rows=[outcome(routed, "suppressed", "duplicate", 11)])
        assert shown(routed) == ("routed", None, 10)
        state.record([], [], [], now, outcome_rows=[outcome(routed, "suppressed", "expired", 10)])
        assert shown(routed) == ("suppressed", "expired", 10)  # its replay, past expires_at by then

        state.record([], [], [], now, outcome_rows=[outcome(rejected, "rejected", "no_template", 20)])
        state.record([], [], [], now, outcome_rows=[outcome(rejected, "routed", None, 95)])  # re-injected
        assert shown(rejected) == ("routed", None, 95)

        state.record([], [], [], now - timedelta(days=8), outcome_rows=[outcome(old, "routed", None, 1)])
        state.record([], [], [], now, outcome_rows=[outcome(old, "suppressed", "opted_out", 500)])
        assert shown(old) == ("suppressed", "opted_out", 500)


def test_outcomes_are_pruned_with_the_dedupe_window_and_then_only_operators_see_the_deliveries(
    db_schema: tuple[Settings, str],
) -> None:
    """Outcome rows past the dedupe window are pruned in bounded batches. Left with delivery-log
    rows alone (which name no service), a service's lookup is None, an operator's (``service=None``)
    shows the deliveries."""
    settings, schema = db_schema
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(4)]
    with connect(settings, schema=schema) as conn:
        state = RouterState(conn, dedupe_window=WINDOW)
        for i, nid in enumerate(ids[:3]):
            state.record([], [], [], now - timedelta(days=8), outcome_rows=[outcome(nid, "routed", None, i)])
        state.record([], [], [], now - timedelta(hours=1), outcome_rows=[outcome(ids[3], "routed", None, 3)])
        conn.execute(
            "insert into delivery_log (delivery_id, notification_id, channel, status, attempts,"
            " provider_message_id, sent_at) values (%s, %s, 'sms', 'sent', 1, 'sns-1', now())",
            (str(uuid.uuid4()), ids[0]),
        )
        conn.commit()
        assert state.prune(now, released_retention=timedelta(days=1), limit=2) == 2
        assert state.prune(now, released_retention=timedelta(days=1), limit=2) == 1
        assert state.prune(now, released_retention=timedelta(days=1), limit=2) == 0
        conn.commit()

    pool = make_pool(settings, schema=schema, min_size=1, max_size=1)
    try:
        assert lookup_status(pool, ids[0], "signup") is None
        pruned = lookup_status(pool, ids[0], None)
        assert pruned is not None
        assert (pruned.outcome, pruned.service, pruned.channels) == (None, None, ())
        assert [(d.status, d.provider_message_id) for d in pruned.deliveries] == [("sent", "sns-1")]
        assert pruned.to_json()["outcome"] is None
        assert lookup_status(pool, ids[1], None) is None  # neither an outcome nor a delivery left
        kept = lookup_status(pool, ids[3], "signup")
        assert kept is not None
        assert kept.outcome == "routed"
    finally:
        pool.close()

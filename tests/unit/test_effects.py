"""The worker's order of effects, from a table and for every plan, without a broker.

One row per outcome kind says the whole plan of one record; the property tests then hold every
plan the functions can make to the rule: the ``Mark`` comes after every ``Produce`` and
``Deactivate``, and ``Commit`` is last.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, cast

import pytest

from consumers.delivery import effects as fx
from consumers.delivery.decide import Action, Step
from consumers.delivery.deliverer import Deliverer, WorkerStats
from consumers.delivery.delivery_log import Claim as DeliveryClaim
from consumers.delivery.delivery_log import ClaimResult, DeliveryLog
from consumers.delivery.effects import (
    Claim,
    Commit,
    Deactivate,
    EventType,
    Kind,
    Mark,
    MarkStatus,
    Pace,
    Produce,
    Send,
    Skip,
)
from consumers.delivery.outcome import Outcome, Status
from notify_core.codec import EVENT, default_codec
from notify_core.events import Failure
from notify_core.instruments import Instruments
from notify_core.kafka_async import AsyncProducer
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from sandboxes.messages import channel_message

AT = datetime(2026, 1, 1, 12, tzinfo=UTC)
SENT = Step(Action.SENT)
RETRY = Step(Action.RETRY, "TooManyRequests", "TooManyRequests", not_before=AT)
DEAD_TOKEN = Step(Action.DEAD_LETTER, "Unregistered", "Unregistered", deactivate=True)
REJECTED = Step(Action.DEAD_LETTER, "552", "552: mailbox full")
EXHAUSTED = Step(Action.DEAD_LETTER, "attempts_exhausted", "3 attempts; last: 450")
EXPIRED = Step(Action.DEAD_LETTER, "expired", "expires before the next attempt; last: UNAVAILABLE")


def event(kind: EventType) -> Produce:
    return Produce(Kind.EVENT, kind)


LETTER = Produce(Kind.DEAD_LETTER)
BEFORE = (Pace(), Claim(), Send())


class Inputs(TypedDict, total=False):
    readable: bool
    expired: bool
    claim: ClaimResult
    step: Step
    outcome: Status
    can_deactivate: bool


# name -> (plan inputs, the plan)
TABLE: dict[str, tuple[Inputs, fx.Plan]] = {
    "sent": (
        {"claim": ClaimResult.CLAIMED, "step": SENT, "outcome": Status.SENT},
        (*BEFORE, event(EventType.SENT), Mark(MarkStatus.SENT), Commit()),
    ),
    "retry": (
        {"claim": ClaimResult.CLAIMED, "step": RETRY, "outcome": Status.RETRY},
        (
            *BEFORE,
            Produce(Kind.RETRY_COPY),
            event(EventType.FAILED_RETRYING),
            Mark(MarkStatus.RETRYING),
            Commit(),
        ),
    ),
    "permanent, target deactivated": (
        {
            "claim": ClaimResult.CLAIMED,
            "step": DEAD_TOKEN,
            "outcome": Status.PERMANENT,
            "can_deactivate": True,
        },
        (
            *BEFORE,
            event(EventType.FAILED_PERMANENT),
            LETTER,
            event(EventType.DEAD_LETTERED),
            Deactivate(),
            event(EventType.TARGET_DEACTIVATED),
            Mark(MarkStatus.DEAD_LETTERED),
            Commit(),
        ),
    ),
    "permanent, dead target but no deactivate hook": (
        {"claim": ClaimResult.CLAIMED, "step": DEAD_TOKEN, "outcome": Status.PERMANENT},
        (
            *BEFORE,
            event(EventType.FAILED_PERMANENT),
            LETTER,
            event(EventType.DEAD_LETTERED),
            Mark(MarkStatus.DEAD_LETTERED),
            Commit(),
        ),
    ),
    "permanent, target alive": (
        {"claim": ClaimResult.CLAIMED, "step": REJECTED, "outcome": Status.PERMANENT, "can_deactivate": True},
        (
            *BEFORE,
            event(EventType.FAILED_PERMANENT),
            LETTER,
            event(EventType.DEAD_LETTERED),
            Mark(MarkStatus.DEAD_LETTERED),
            Commit(),
        ),
    ),
    "attempts exhausted": (  # a retryable answer: no FAILED_PERMANENT
        {"claim": ClaimResult.CLAIMED, "step": EXHAUSTED, "outcome": Status.RETRY},
        (*BEFORE, LETTER, event(EventType.DEAD_LETTERED), Mark(MarkStatus.DEAD_LETTERED), Commit()),
    ),
    "expires before the next attempt": (
        {"claim": ClaimResult.CLAIMED, "step": EXPIRED, "outcome": Status.RETRY},
        (*BEFORE, LETTER, event(EventType.DEAD_LETTERED), Mark(MarkStatus.DEAD_LETTERED), Commit()),
    ),
    "expired on arrival": (  # no pace, no claim, no call, so no mark: nothing was attempted
        {"expired": True},
        (LETTER, event(EventType.DEAD_LETTERED), Commit()),
    ),
    "busy: another lease runs": (
        {"claim": ClaimResult.BUSY},
        (Pace(), Claim(), Produce(Kind.RETRY_COPY, busy=True), Commit()),
    ),
    "done: a redelivered record": (
        {"claim": ClaimResult.DONE},
        (Pace(), Claim(), Skip(), Commit()),
    ),
    "undecodable or checked out": (  # no message to build an event from
        {"readable": False},
        (LETTER, Commit()),
    ),
}


@pytest.mark.parametrize("name", list(TABLE))
def test_each_outcome_kind_has_its_plan(name: str) -> None:
    inputs, expected = TABLE[name]
    assert fx.plan(**inputs) == expected


def test_the_stages_chain_as_the_deliverer_runs_them() -> None:
    assert fx.on_arrival(readable=True, expired=False) == (Pace(), Claim())
    assert fx.on_claim(ClaimResult.CLAIMED) == (Send(),)
    assert fx.after_call(SENT, Status.SENT, can_deactivate=False) == (
        event(EventType.SENT),
        Mark(MarkStatus.SENT),
        Commit(),
    )
    assert fx.on_internal_error() == (LETTER, Commit())


def test_a_plan_that_asks_for_an_answer_needs_it() -> None:
    with pytest.raises(ValueError, match="claim result"):
        fx.plan()
    with pytest.raises(ValueError, match="step and the outcome"):
        fx.plan(claim=ClaimResult.CLAIMED)


def every_plan() -> list[fx.Plan]:
    """Every plan the functions can make: the plan depends on the step only through its action and
    its ``deactivate``, so this covers the whole input space, unreachable combinations included."""
    steps = [Step(a, "reason", "detail", not_before=AT, deactivate=d) for a in Action for d in (True, False)]
    plans = {fx.on_internal_error()}
    for readable, expired, claim, step, outcome, hook in itertools.product(
        [True, False], [True, False], ClaimResult, steps, Status, [True, False]
    ):
        plans.add(
            fx.plan(
                readable=readable,
                expired=expired,
                claim=claim,
                step=step,
                outcome=outcome,
                can_deactivate=hook,
            )
        )
    return sorted(plans, key=repr)


PLANS = every_plan()


def test_every_row_of_the_table_is_among_every_plan() -> None:
    assert {expected for _, expected in TABLE.values()} <= set(PLANS)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: "-".join(type(e).__name__ for e in p))
def test_every_plan_marks_after_its_kafka_records_and_deactivation_and_commits_last(plan: fx.Plan) -> None:
    assert plan[-1] == Commit()
    assert plan.count(Commit()) == 1
    marks = [i for i, e in enumerate(plan) if isinstance(e, Mark)]
    assert len(marks) <= 1
    for i, effect in enumerate(plan):
        if isinstance(effect, Produce | Deactivate) and marks:
            assert i < marks[0], f"{effect} after the mark in {plan}"
    if Send() in plan:  # an attempt that was made is always marked, once the rest is acknowledged
        assert plan.index(Pace()) < plan.index(Claim()) < plan.index(Send()) < marks[0]
    assert fx.violations(plan) == []


@pytest.mark.parametrize(
    ("plan", "broken"),
    [
        # The old order (5fece47): the log marked first, then the records that carry the outcome.
        (
            (*BEFORE, Mark(MarkStatus.DEAD_LETTERED), LETTER, event(EventType.DEAD_LETTERED), Commit()),
            "after the Mark",
        ),
        ((*BEFORE, Mark(MarkStatus.SENT), event(EventType.SENT), Commit()), "after the Mark"),
        (
            (*BEFORE, LETTER, Deactivate(), Commit(), Mark(MarkStatus.DEAD_LETTERED)),
            "Commit must be the last",
        ),
        ((Claim(), Pace(), Send(), Mark(MarkStatus.SENT), Commit()), "Claim without a Pace"),
        ((Pace(), Send(), Mark(MarkStatus.SENT), Commit()), "Send without a Claim"),
        ((*BEFORE, event(EventType.TARGET_DEACTIVATED), Deactivate(), Commit()), "TARGET_DEACTIVATED before"),
        ((*BEFORE, Mark(MarkStatus.SENT), Mark(MarkStatus.SENT), Commit()), "one Mark at most"),
        ((LETTER,), "Commit must be the last"),
    ],
)
def test_violations_names_a_broken_order(plan: fx.Plan, broken: str) -> None:
    assert any(broken in found for found in fx.violations(plan)), fx.violations(plan)


# --- the deliverer runs the plan: each effect is one call, in the plan's order ---------------------


class Trace:
    """What the fakes were asked to do, in order; a failed produce is noted with ``!``."""

    def __init__(self, settings: Settings) -> None:
        self.calls: list[str] = []
        self.names = topic_names(settings)

    def produced(self, topic: str, value: bytes, failed: bool) -> None:
        if topic == self.names.events:
            label = f"event:{default_codec().decode(value, EVENT)['event_type']}"
        else:
            label = "dead_letter" if topic == self.names.dlq(Channel.IOS) else "retry_copy"
        self.calls.append(label + ("!" if failed else ""))


class FakeProducer:
    def __init__(self, trace: Trace, fail_letters: int) -> None:
        self.trace, self.fail_letters = trace, fail_letters

    async def produce(
        self, topic: str, value: bytes, key: bytes | None = None, headers: object = None
    ) -> None:
        if topic == self.trace.names.dlq(Channel.IOS) and self.fail_letters > 0:
            self.fail_letters -= 1
            self.trace.produced(topic, value, failed=True)
            raise TimeoutError("no ack: the broker is away")  # an outage: retried, not dead-lettered
        self.trace.produced(topic, value, failed=False)


class FakeLog:
    def __init__(self, trace: Trace, claim: DeliveryClaim) -> None:
        self.trace, self.claim_ = trace, claim

    async def claim(self, *_args: object) -> DeliveryClaim:
        self.trace.calls.append("claim")
        return self.claim_

    async def mark_sent(self, *_args: object) -> bool:
        self.trace.calls.append("mark:sent")
        return True

    async def mark_failed(self, _delivery_id: str, status: str, *_args: object) -> bool:
        self.trace.calls.append(f"mark:{status}")
        return True


class FakeAdapter:
    def __init__(self, trace: Trace, outcome: Outcome) -> None:
        self.trace, self.outcome = trace, outcome

    async def send(self, message: Mapping[str, Any]) -> Outcome:
        self.trace.calls.append("send")
        return self.outcome

    async def close(self) -> None:
        return None


def label(effect: fx.Effect) -> str | None:
    """The fake call an effect is expected to make (None: no call the fakes see)."""
    match effect:
        case Produce(kind=Kind.EVENT, event=kind):
            return f"event:{kind}"
        case Produce(kind=kind):
            return str(kind)
        case Mark(status=status):
            return f"mark:{status}"
        case Pace() | Skip() | Commit():
            return "pace" if isinstance(effect, Pace) else None
    return type(effect).__name__.lower()


MAX = Settings().delivery_max_attempts
# name -> (the claim, the provider's answer, how the message differs); the rows of TABLE, as calls.
RUNS: dict[str, tuple[DeliveryClaim, Outcome, dict[str, Any]]] = {
    "sent": (DeliveryClaim(ClaimResult.CLAIMED, attempts=1), Outcome.sent("m-1"), {}),
    "retry": (DeliveryClaim(ClaimResult.CLAIMED, attempts=1), Outcome.retry("TooManyRequests"), {}),
    "permanent, target deactivated": (
        DeliveryClaim(ClaimResult.CLAIMED, attempts=1),
        Outcome.permanent("Unregistered", deactivate_target=True),
        {},
    ),
    "permanent, target alive": (DeliveryClaim(ClaimResult.CLAIMED, attempts=1), Outcome.permanent("552"), {}),
    "attempts exhausted": (DeliveryClaim(ClaimResult.CLAIMED, attempts=MAX), Outcome.retry("450"), {}),
    "expires before the next attempt": (
        DeliveryClaim(ClaimResult.CLAIMED, attempts=1),
        Outcome.retry("UNAVAILABLE", retry_after_s=60),  # a floor on the delay: past the expiry
        {"expires_in": timedelta(seconds=30)},
    ),
    "expired on arrival": (
        DeliveryClaim(ClaimResult.CLAIMED),
        Outcome.sent(None),
        {"expires_in": timedelta(seconds=-1)},
    ),
    "busy: another lease runs": (DeliveryClaim(ClaimResult.BUSY), Outcome.sent(None), {}),
    "done: a redelivered record": (DeliveryClaim(ClaimResult.DONE), Outcome.sent(None), {}),
    "undecodable or checked out": (DeliveryClaim(ClaimResult.CLAIMED), Outcome.sent(None), {"message": None}),
}


async def run_deliverer(
    name: str, monkeypatch: pytest.MonkeyPatch, fail_letters: int = 0, instruments: Instruments | None = None
) -> tuple[list[str], WorkerStats]:
    settings = Settings()
    trace = Trace(settings)
    claim, outcome, overrides = RUNS[name]
    deactivated: list[str] = []

    async def deactivate(_channel: Channel, ref: str, _reason: str) -> None:
        trace.calls.append("deactivate")
        deactivated.append(ref)

    deliverer = Deliverer(
        settings,
        Channel.IOS,
        FakeAdapter(trace, outcome),
        cast(DeliveryLog, FakeLog(trace, claim)),
        provider="fake",
        deactivate=deactivate,
        clock=lambda: datetime.now(UTC),
        rng=random.Random(7),
        stats=WorkerStats(),
        instruments=instruments,
    )

    async def pace() -> float:
        trace.calls.append("pace")
        return 0.0

    monkeypatch.setattr(deliverer._bucket, "acquire", pace)
    message = channel_message(Channel.IOS, "ab" * 32)
    if "expires_in" in overrides:  # from now, not from import time
        message["expires_at"] = datetime.now(UTC) + overrides["expires_in"]
    failure = Failure("decode_error", "not a channel message") if "message" in overrides else None
    record = Record(topic="notifications.ios", partition=0, offset=7, key=b"u-1", value=b"")
    producer = cast(AsyncProducer, FakeProducer(trace, fail_letters))
    await deliverer.deliver(record, None if failure else message, failure, producer)
    deliverer.metrics.flush()
    return trace.calls, deliverer.stats


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(RUNS))
async def test_the_deliverer_makes_one_call_per_effect_in_the_plans_order(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, stats = await run_deliverer(name, monkeypatch)
    _, plan = TABLE[name]
    assert calls == [c for c in map(label, plan) if c is not None]
    assert stats.internal_errors == 0


@pytest.mark.asyncio
async def test_a_dead_letter_the_broker_does_not_acknowledge_is_retried_before_the_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two produces of the letter fail (an outage): the mark waits for the third, acknowledged one."""
    calls, stats = await run_deliverer("permanent, target deactivated", monkeypatch, fail_letters=2)
    assert calls == [
        "pace",
        "claim",
        "send",
        "event:FAILED_PERMANENT",
        "dead_letter!",
        "dead_letter!",
        "dead_letter",
        "event:DEAD_LETTERED",
        "deactivate",
        "event:TARGET_DEACTIVATED",
        "mark:dead_lettered",
    ]
    assert (stats.dead_lettered, stats.deactivated, stats.internal_errors) == (1, 1, 0)

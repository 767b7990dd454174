"""The worker's order of effects for one channel record, as a pure plan.

``Deliverer`` (``deliverer.py``) only runs what these functions return; the order is decided here,
where it is tested from tables without a broker (``tests/unit/test_effects.py``).

The ordering rule, the worker's safety argument:

- The pace (the rate-limit token) is taken before the claim, so a queue waiting on a slow pace
  never outlives its lease; the claim comes before the provider call.
- Every Kafka record carrying the outcome (retry copy, dead letter, event) is acknowledged before
  the delivery log records the final state, and a dead target is deactivated before that mark too.
  The log is the last word, never the first: a redelivered record whose row is final is skipped,
  so whatever was meant to follow the mark would be lost for good after a crash or an outage in
  between, while whatever precedes it is only repeated (a duplicate event or letter).
- The offset is committed only after everything: ``Commit`` is the last effect of every plan.

``violations`` states the rule as code; every plan these functions make has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from consumers.delivery.decide import Action, Step
from consumers.delivery.delivery_log import ClaimResult
from consumers.delivery.outcome import Status


class Kind(StrEnum):
    """What a ``Produce`` writes."""

    RETRY_COPY = "retry_copy"  # the channel message again, on a retry tier topic
    DEAD_LETTER = "dead_letter"  # the record, on the channel's DLQ
    EVENT = "event"  # an analytics event, on the events topic


class EventType(StrEnum):
    """The ``notification_event`` symbols a worker emits."""

    SENT = "SENT"
    FAILED_RETRYING = "FAILED_RETRYING"
    FAILED_PERMANENT = "FAILED_PERMANENT"
    DEAD_LETTERED = "DEAD_LETTERED"
    TARGET_DEACTIVATED = "TARGET_DEACTIVATED"


class MarkStatus(StrEnum):
    """The delivery log's final word on one attempt."""

    SENT = "sent"
    RETRYING = "retrying"  # releases the lease for the retry copy
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class Pace:
    """Take a token from the channel's rate limit."""


@dataclass(frozen=True)
class Claim:
    """Claim the delivery's lease in the delivery log; its answer picks the next stage."""


@dataclass(frozen=True)
class Skip:
    """The delivery already ended (a redelivered record): nothing to do but count it."""


@dataclass(frozen=True)
class Send:
    """Call the provider; the outcome and its step pick the next stage."""


@dataclass(frozen=True)
class Produce:
    """Produce one record and wait for the broker's ack."""

    kind: Kind
    event: EventType | None = None  # for Kind.EVENT
    busy: bool = False  # a retry copy deferring a busy lease (same attempt), not a failed attempt


@dataclass(frozen=True)
class Deactivate:
    """Deactivate the device or contact the message's ``target_ref`` names."""


@dataclass(frozen=True)
class Mark:
    """Record the final state of this attempt in the delivery log."""

    status: MarkStatus


@dataclass(frozen=True)
class Commit:
    """The record is finished and its offset may be committed: ``Worker._run_one`` does that
    (``tracker.finish``) once ``Deliverer.deliver`` returns, which is right after this effect."""


Effect = Pace | Claim | Skip | Send | Produce | Deactivate | Mark | Commit
Plan = tuple[Effect, ...]


def _event(kind: EventType) -> Produce:
    return Produce(Kind.EVENT, kind)


def on_arrival(*, readable: bool, expired: bool) -> Plan:
    """Before the call. ``readable``: decoded and checked (``check_message``); ``expired``: its
    ``expires_at`` has passed. An unreadable record has no message to build an event from."""
    if not readable:
        return (Produce(Kind.DEAD_LETTER), Commit())
    if expired:
        return (Produce(Kind.DEAD_LETTER), _event(EventType.DEAD_LETTERED), Commit())
    return (Pace(), Claim())


def on_claim(result: ClaimResult) -> Plan:
    """After the claim: skip a finished delivery, defer a busy one, or make the call."""
    if result is ClaimResult.DONE:
        return (Skip(), Commit())
    if result is ClaimResult.BUSY:
        return (Produce(Kind.RETRY_COPY, busy=True), Commit())
    return (Send(),)


def after_call(step: Step, outcome: Status, *, can_deactivate: bool) -> Plan:
    """After the call: what carries the outcome to Kafka, then the mark, then the commit.

    ``step`` is ``decide.next_step``'s; ``outcome`` the provider's answer (a permanent one gets its
    own event); ``can_deactivate``: the worker was given a deactivate hook.
    """
    if step.action is Action.SENT:
        return (_event(EventType.SENT), Mark(MarkStatus.SENT), Commit())
    if step.action is Action.RETRY:
        return (
            Produce(Kind.RETRY_COPY),
            _event(EventType.FAILED_RETRYING),
            Mark(MarkStatus.RETRYING),
            Commit(),
        )
    effects: list[Effect] = []
    if outcome is Status.PERMANENT:
        effects.append(_event(EventType.FAILED_PERMANENT))
    effects += [Produce(Kind.DEAD_LETTER), _event(EventType.DEAD_LETTERED)]
    if step.deactivate and can_deactivate:
        effects += [Deactivate(), _event(EventType.TARGET_DEACTIVATED)]  # the event says it happened
    return (*effects, Mark(MarkStatus.DEAD_LETTERED), Commit())


def on_internal_error() -> Plan:
    """Handling the record raised: dead-letter it as it was received, and move on."""
    return (Produce(Kind.DEAD_LETTER), Commit())


def plan(
    *,
    readable: bool = True,
    expired: bool = False,
    claim: ClaimResult | None = None,
    step: Step | None = None,
    outcome: Status | None = None,
    can_deactivate: bool = False,
) -> Plan:
    """One record's whole plan, chained as the deliverer chains it: a stage ending in ``Claim`` is
    continued by ``on_claim``, one ending in ``Send`` by ``after_call``. Raises ``ValueError`` when
    an answer the plan asks for is missing."""
    effects = on_arrival(readable=readable, expired=expired)
    if effects[-1] == Claim():
        if claim is None:
            raise ValueError("the plan claims: the claim result is needed")
        effects += on_claim(claim)
    if effects[-1] == Send():
        if step is None or outcome is None:
            raise ValueError("the plan sends: the step and the outcome are needed")
        effects += after_call(step, outcome, can_deactivate=can_deactivate)
    return effects


def violations(effects: Plan) -> list[str]:
    """How ``effects`` breaks the ordering rule (empty when it keeps it)."""
    found: list[str] = []
    if not effects or effects[-1] != Commit() or effects.count(Commit()) != 1:
        found.append("Commit must be the last effect, once")
    marks = [i for i, e in enumerate(effects) if isinstance(e, Mark)]
    if len(marks) > 1:
        found.append("one Mark at most")
    if marks:
        late = [e for e in effects[marks[0] :] if isinstance(e, Produce | Deactivate)]
        found += [f"{e} after the Mark" for e in late]
    order = [type(e) for e in effects]
    for first, then in ((Pace, Claim), (Claim, Send), (Send, Mark)):
        if then in order and (first not in order or order.index(first) > order.index(then)):
            found.append(f"{then.__name__} without a {first.__name__} before it")
    told = _event(EventType.TARGET_DEACTIVATED)
    if told in effects and (Deactivate() not in effects or effects.index(Deactivate()) > effects.index(told)):
        found.append("TARGET_DEACTIVATED before the Deactivate")
    return found

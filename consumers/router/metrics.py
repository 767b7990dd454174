"""What the router records: requests consumed, records produced, and each request's outcome.

Recorded per batch, never per record: an SDK call costs 5-10 µs and the router handles 10k+
requests a second, so a batch of 500 costs a handful of calls (one for consumed, one per topic
produced, one per outcome and reason).

Outcomes (``notify.router.requests``): ``routed`` (at least one delivery goes out now),
``deferred`` (every delivery waits for quiet hours or ``send_at``), ``duplicate``, ``suppressed``
(reason: expired, unknown_user, unsubscribed, opted_out, no_contact, capped, no_template or
all_channels_suppressed) and ``invalid`` (reason: the dead letter's error_type). Taken from the
plan's outcome rows, the same account the status endpoint serves (``outcome.py``).
``request_outcomes`` is pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from consumers.router.batch import BatchPlan, Parsed, Rejected
from consumers.router.outcome import OutcomeRow
from notify_core.instruments import OUTCOME, PROCESS, REASON, TOPIC, Instruments
from notify_core.metric_labels import NONE, BoundedValues
from notify_core.topics import TopicNames

Outcome = tuple[str, str]  # (outcome, reason); reason NONE when there is none


def request_outcomes(items: Sequence[Parsed | Rejected], plan: BatchPlan) -> Counter[Outcome]:
    """How many requests of the batch ended how: one per item, parsed or not."""
    counts: Counter[Outcome] = Counter()
    for item in items:
        if isinstance(item, Rejected):  # undecodable or invalid: no outcome row, nothing to file it under
            counts["invalid", item.failure.error_type] += 1
    for row in plan.outcome_rows:
        counts[outcome_of_row(row)] += 1
    return counts


def outcome_of_row(row: OutcomeRow) -> Outcome:
    if row.outcome == "rejected":
        return "invalid", row.reason or "invalid"
    if row.outcome == "suppressed":
        if row.reason == "duplicate":
            return "duplicate", NONE
        return "suppressed", row.reason or NONE
    if any(channel.state == "routed" for channel in row.channels):
        return "routed", NONE
    return "deferred", NONE


class RouterMetrics:
    def __init__(self, instruments: Instruments, names: TopicNames) -> None:
        self._instruments, self._names = instruments, names
        # Off, the no-op instruments would still cost the counting below (~0.7 µs a request).
        self._on = instruments.metrics.enabled
        self._reasons = BoundedValues()  # closed sets today; bounded whatever a new code path adds
        self._consumed = {PROCESS: "router", TOPIC: names.base(names.requests)}

    def consumed(self, count: int) -> None:
        self._instruments.consumed.add(count, self._consumed)

    def produced(self, topics: Iterable[str]) -> None:
        """After a Kafka transaction committed, with the topic of each record it carried."""
        if not self._on:
            return
        for topic, count in Counter(topics).items():
            self._instruments.produced.add(count, {PROCESS: "router", TOPIC: self._names.base(topic)})

    def decided(self, items: Sequence[Parsed | Rejected], plan: BatchPlan) -> None:
        """After the batch planned from ``items`` committed."""
        if not self._on:
            return
        for (outcome, reason), count in request_outcomes(items, plan).items():
            self._instruments.routed.add(count, {OUTCOME: outcome, REASON: self._reasons(reason)})

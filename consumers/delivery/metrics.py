"""What a channel worker records, and where (``deliverer.py`` and ``worker.py`` call these).

- ``notify.provider.call.duration`` {channel, provider, outcome}: every adapter call, outcome
  ``accepted`` | ``retryable`` | ``permanent`` | ``error`` (the adapter raised);
- ``notify.deliveries.in_flight`` {channel}: adapter calls under way;
- ``notify.delivery.latency`` {channel, provider}: from the request's ``created_at`` (the channel
  message's ``requested_at``) to the provider's acceptance; not recorded for a message without it;
- ``notify.deliveries`` {channel, provider, outcome}: one per record the worker is done with (see
  ``Instruments.deliveries``);
- ``notify.retries`` and ``notify.dead_letters`` {channel, provider, reason}: the reason is the
  retry's or the letter's ``error_type``, bounded by ``BoundedValues`` (often a provider's own code);
- ``notify.rate_limit.waits`` / ``.wait.time`` {channel, provider}: acquisitions that had to wait;
- ``notify.messages.consumed`` per poll batch and ``.produced`` per acknowledged record
  {process=worker, topic base name}.

Counts go through a ``Tally`` (a dict update each) that the worker loop flushes once a second and at
exit; in flight is reported as its change since the last flush. The two histograms are recorded per
call: the SDK offers nothing cheaper, and there are at most two per delivery.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from consumers.delivery.outcome import Outcome, Status
from notify_core.instruments import CHANNEL, OUTCOME, PROCESS, PROVIDER, REASON, TOPIC, Instruments
from notify_core.metric_labels import BoundedValues
from notify_core.tally import Labels, Tally
from notify_core.topics import Channel, TopicNames

DELIVERED, FAILED, RETRIED, DEAD_LETTERED, SKIPPED = (
    "delivered",
    "failed",
    "retried",
    "dead_lettered",
    "skipped",
)
DELIVERY_OUTCOMES = (DELIVERED, FAILED, RETRIED, DEAD_LETTERED, SKIPPED)
CALL_OUTCOMES = {Status.SENT: "accepted", Status.RETRY: "retryable", Status.PERMANENT: "permanent"}
CALL_ERROR = "error"


class Call:
    """One adapter call, as a context manager: in flight while it runs, then timed by its outcome
    (set ``outcome`` once the adapter answers; left unset, the call is an ``error``). A class, not
    ``@contextmanager``: the generator version costs ~1 µs more per call."""

    __slots__ = ("_began", "_metrics", "outcome")

    def __init__(self, metrics: DeliveryMetrics) -> None:
        self._metrics = metrics
        self._began = 0.0
        self.outcome: Outcome | None = None

    def __enter__(self) -> Call:
        self._metrics.in_flight += 1
        self._began = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        metrics = self._metrics
        metrics.in_flight -= 1
        outcome = CALL_ERROR if self.outcome is None else CALL_OUTCOMES[self.outcome.status]
        metrics.instruments.provider_latency.record(time.perf_counter() - self._began, metrics.calls[outcome])


class DeliveryMetrics:
    def __init__(self, instruments: Instruments, names: TopicNames, channel: Channel, provider: str) -> None:
        self.instruments, self._names = instruments, names
        self._tally = Tally()
        self._reasons = BoundedValues()
        self._who: Labels = ((CHANNEL, channel.value), (PROVIDER, provider))
        # Built once: a hot path only looks its labels up.
        self._ended = {o: (*self._who, (OUTCOME, o)) for o in DELIVERY_OUTCOMES}
        self.calls = {o: dict((*self._who, (OUTCOME, o))) for o in (*CALL_OUTCOMES.values(), CALL_ERROR)}
        self._latency = dict(self._who)
        self._channel: Labels = ((CHANNEL, channel.value),)
        self._topics: dict[str, Labels] = {}
        self.in_flight = 0
        self._reported_in_flight = 0
        # A gauge is there from the start, at 0: an idle worker's is a value, not a missing series.
        instruments.in_flight.add(0, dict(self._channel))

    # --- provider calls ---------------------------------------------------------------------------
    def call(self) -> Call:
        """``with metrics.call() as call:`` around one adapter call."""
        return Call(self)

    def paced(self, waited_s: float) -> None:
        """After the rate limit's token was taken, ``waited_s`` after asking (0: at once)."""
        if waited_s:
            self._tally.add(self.instruments.rate_limit_waits, 1, self._who)
            self._tally.add(self.instruments.rate_limit_wait_time, waited_s, self._who)

    # --- how a record ended -----------------------------------------------------------------------
    def delivered(self, requested_at: datetime | None, accepted_at: datetime) -> None:
        self._tally.add(self.instruments.deliveries, 1, self._ended[DELIVERED])
        if requested_at is not None:  # a clock running behind the requester's is not negative latency
            seconds = max(0.0, (accepted_at - requested_at).total_seconds())
            self.instruments.e2e_latency.record(seconds, self._latency)

    def retried(self, reason: str) -> None:
        self._tally.add(self.instruments.deliveries, 1, self._ended[RETRIED])
        self._tally.add(self.instruments.retries, 1, (*self._who, (REASON, self._reasons(reason))))

    def dead_lettered(self, reason: str) -> None:
        self._tally.add(self.instruments.deliveries, 1, self._ended[DEAD_LETTERED])
        self._tally.add(self.instruments.dead_letters, 1, (*self._who, (REASON, self._reasons(reason))))

    def ended(self, outcome: str) -> None:
        """``SKIPPED`` (already sent) or ``FAILED`` (not even a dead letter could be written)."""
        self._tally.add(self.instruments.deliveries, 1, self._ended[outcome])

    # --- Kafka ------------------------------------------------------------------------------------
    def consumed(self, topics: Iterable[str]) -> None:
        """One poll batch, with each record's topic."""
        for topic, count in Counter(topics).items():
            self._tally.add(self.instruments.consumed, count, self._topic(topic))

    def produced(self, topic: str) -> None:
        self._tally.add(self.instruments.produced, 1, self._topic(topic))

    def _topic(self, topic: str) -> Labels:
        labels = self._topics.get(topic)
        if labels is None:
            labels = self._topics[topic] = ((PROCESS, "worker"), (TOPIC, self._names.base(topic)))
        return labels

    def flush(self) -> None:
        """Hand what was tallied to the SDK (the worker loop calls this once a second, and at exit)."""
        change = self.in_flight - self._reported_in_flight
        if change:
            self._tally.add(self.instruments.in_flight, change, self._channel)
            self._reported_in_flight = self.in_flight
        self._tally.flush()

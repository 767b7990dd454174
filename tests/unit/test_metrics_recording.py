"""What each process records, and where, without a broker: the deliverer's outcomes from the same
table ``test_effects`` runs, the router's request outcomes, the sink's progress, the tally, and the
endpoint a process serves (on and off)."""

from __future__ import annotations

import random
import time
import urllib.error
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from analytics_sink.flusher import SinkStats
from analytics_sink.metrics import SinkMetrics
from consumers.delivery.deliverer import Deliverer, WorkerStats
from consumers.delivery.delivery_log import Claim, ClaimResult, DeliveryLog
from consumers.delivery.metrics import DeliveryMetrics
from consumers.delivery.outcome import Outcome
from consumers.router.batch import BatchPlan, Rejected
from consumers.router.metrics import outcome_of_row, request_outcomes
from consumers.router.outcome import OutcomeRow
from notify_core.events import Failure
from notify_core.instruments import CHANNEL, Instruments
from notify_core.kafka_async import AsyncProducer
from notify_core.metrics import Metrics
from notify_core.metrics_server import served_instruments
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.status import ChannelStatus
from notify_core.tally import Tally
from notify_core.topics import Channel, TopicNames
from sandboxes.messages import channel_message
from tests.metrics_scrape import Sample, samples, scrape, targets, total
from tests.unit.test_effects import RUNS, FakeLog, FakeProducer, Trace, run_deliverer


def rendered(metrics: Metrics) -> list[Sample]:
    return samples(metrics.render().decode())


# --- the deliverer: one outcome per record, from the effects table's runs --------------------------
# run name -> (deliveries outcome or None, the retry's or letter's reason, the provider call's outcome)
DELIVERIES: dict[str, tuple[str | None, str | None, str | None]] = {
    "sent": ("delivered", None, "accepted"),
    "retry": ("retried", "TooManyRequests", "retryable"),
    "permanent, target deactivated": ("dead_lettered", "Unregistered", "permanent"),
    "permanent, target alive": ("dead_lettered", "552", "permanent"),
    "attempts exhausted": ("dead_lettered", "attempts_exhausted", "retryable"),
    "expires before the next attempt": ("dead_lettered", "expired", "retryable"),
    "expired on arrival": ("dead_lettered", "expired", None),
    "busy: another lease runs": (None, None, None),  # deferred to a retry topic: not an end
    "done: a redelivered record": ("skipped", None, None),
    "undecodable or checked out": ("dead_lettered", "decode_error", None),
}


def test_the_table_covers_every_run() -> None:
    assert set(DELIVERIES) == set(RUNS)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(RUNS))
async def test_each_record_ends_as_one_delivery_outcome(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly one notify_deliveries sample per ended record, its reason on the retry or dead-letter
    counter, one provider call timed with its outcome, and nothing left in flight."""
    metrics = Metrics("test")
    await run_deliverer(name, monkeypatch, instruments=Instruments(metrics))
    found = rendered(metrics)
    ended, reason, call = DELIVERIES[name]
    who = {"notify_channel": "ios", "notify_provider": "fake"}
    assert total(found, "notify_deliveries_total") == (0 if ended is None else 1)
    if ended is not None:
        assert total(found, "notify_deliveries_total", notify_outcome=ended, **who) == 1
    retried = total(found, "notify_retries_total", **who)
    lettered = total(found, "notify_dead_letters_total", **who)
    assert (retried, lettered) == (
        (1, 0) if ended == "retried" else (0, 1) if ended == "dead_lettered" else (0, 0)
    )
    if reason is not None:
        counter = "notify_retries_total" if ended == "retried" else "notify_dead_letters_total"
        assert total(found, counter, notify_reason=reason) == 1
    calls = total(found, "notify_provider_call_duration_seconds_count")
    assert calls == (0 if call is None else 1)
    if call is not None:
        assert total(found, "notify_provider_call_duration_seconds_count", notify_outcome=call, **who) == 1
    # The request's time travels in the message: accepted deliveries measure request-to-provider.
    assert total(found, "notify_delivery_latency_seconds_count", **who) == (1 if ended == "delivered" else 0)
    [in_flight] = [s for s in found if s.name == "notify_deliveries_in_flight"]  # there, at 0
    assert in_flight.value == 0


class RaisingAdapter:
    async def send(self, message: Mapping[str, Any]) -> Outcome:
        raise RuntimeError("the adapter broke")

    async def close(self) -> None:
        return None


@pytest.mark.asyncio
async def test_an_adapter_that_raises_is_a_call_error_and_an_internal_error_letter() -> None:
    settings = Settings()
    metrics = Metrics("test")
    trace = Trace(settings)
    deliverer = Deliverer(
        settings,
        Channel.IOS,
        RaisingAdapter(),
        cast(DeliveryLog, FakeLog(trace, Claim(ClaimResult.CLAIMED, attempts=1))),
        provider="apns",
        deactivate=None,
        clock=lambda: datetime.now(UTC),
        rng=random.Random(7),
        stats=WorkerStats(),
        instruments=Instruments(metrics),
    )
    record = Record(topic="notifications.ios", partition=0, offset=1, key=b"u-1", value=b"")
    producer = cast(AsyncProducer, FakeProducer(trace, 0))
    await deliverer.deliver(record, channel_message(Channel.IOS, "ab" * 32), None, producer)
    deliverer.metrics.flush()
    found = rendered(metrics)
    assert total(found, "notify_provider_call_duration_seconds_count", notify_outcome="error") == 1
    assert total(found, "notify_deliveries_total", notify_outcome="dead_lettered") == 1
    assert total(found, "notify_dead_letters_total", notify_reason="internal_error") == 1
    assert total(found, "notify_deliveries_in_flight", notify_channel="ios") == 0
    assert total(found, "notify_messages_produced_total", messaging_destination_name="ios.dlq") == 1


# --- the router: one outcome per request --------------------------------------------------------------
def row(outcome: str, reason: str | None, *states: str) -> OutcomeRow:
    channels = tuple(ChannelStatus("ios", state) for state in states)
    return OutcomeRow("n", "svc", "u", "c", "t", outcome, reason, channels, 0, 0)


@pytest.mark.parametrize(
    ("outcome_row", "expected"),
    [
        (row("routed", None, "routed"), ("routed", "")),
        (row("routed", None, "deferred", "routed", "suppressed"), ("routed", "")),
        (row("routed", None, "deferred", "suppressed"), ("deferred", "")),
        (row("suppressed", "duplicate"), ("duplicate", "")),
        (row("suppressed", "unknown_user"), ("suppressed", "unknown_user")),
        (row("suppressed", "opted_out", "suppressed"), ("suppressed", "opted_out")),
        (row("rejected", "missing_param"), ("invalid", "missing_param")),
    ],
)
def test_a_requests_outcome_row_names_its_metric_outcome(
    outcome_row: OutcomeRow, expected: tuple[str, str]
) -> None:
    assert outcome_of_row(outcome_row) == expected


def test_a_batch_counts_each_request_once_parsed_or_not() -> None:
    """Undecodable records have no outcome row but are requests too: invalid, with their error."""
    plan = BatchPlan()
    plan.outcome_rows = [
        row("routed", None, "routed"),
        row("routed", None, "routed"),
        row("suppressed", "capped"),
    ]
    items = [Rejected(Record("t.requests", 0, 9, None, b""), Failure("decode_error", "not Avro"))]
    assert request_outcomes(items, plan) == {
        ("routed", ""): 2,
        ("suppressed", "capped"): 1,
        ("invalid", "decode_error"): 1,
    }


# --- the sink: what changed since the last pass ---------------------------------------------------------
def test_the_sink_records_what_changed_since_its_last_pass() -> None:
    metrics = Metrics("test")
    sink = SinkMetrics(Instruments(metrics), TopicNames("t"))
    stats = SinkStats()
    sink.consumed(7)
    sink.progress(stats, 0)  # nothing flushed yet: nothing recorded
    stats.rows, stats.files = 5, 1
    sink.progress(stats, 1)
    stats.rows, stats.files = 12, 3
    sink.progress(stats, 1)
    found = rendered(metrics)
    assert total(found, "notify_messages_consumed_total", notify_process="sink") == 7
    assert total(found, "notify_sink_rows_total") == 12
    assert total(found, "notify_sink_files_total") == 3
    assert total(found, "notify_dead_letters_total", notify_reason="decode_error") == 1
    assert total(found, "notify_messages_produced_total", messaging_destination_name="events.dlq") == 1


# --- the tally ----------------------------------------------------------------------------------------
def test_the_tally_sums_per_series_and_hands_each_over_once() -> None:
    metrics = Metrics("test")
    instruments = Instruments(metrics)
    tally = Tally()
    ios, sms = ((CHANNEL, "ios"),), ((CHANNEL, "sms"),)
    for _ in range(1000):
        tally.add(instruments.deliveries, 1, ios)
    tally.add(instruments.deliveries, 2, sms)
    tally.add(instruments.in_flight, 3, ios)
    tally.add(instruments.in_flight, -3, ios)  # nets to nothing: no call at all
    assert tally.pending() == 3
    assert total(rendered(metrics), "notify_deliveries_total") == 0  # not before the flush
    tally.flush()
    assert tally.pending() == 0
    found = rendered(metrics)
    assert total(found, "notify_deliveries_total", notify_channel="ios") == 1000
    assert total(found, "notify_deliveries_total", notify_channel="sms") == 2
    assert [s for s in found if s.name == "notify_deliveries_in_flight"] == []


# --- metrics on and off ----------------------------------------------------------------------------
def test_with_metrics_off_the_instruments_record_nothing_and_nothing_is_served(tmp_path: Path) -> None:
    """NOTIFY_METRICS_ENABLED=false: no-op instruments, no endpoint, no target file."""
    settings = Settings(metrics_enabled=False, metrics_targets_dir=tmp_path)
    with served_instruments(settings, job="notify-worker-ios", instance="0") as instruments:
        assert not instruments.metrics.enabled
        instruments.deliveries.add(1, {CHANNEL: "ios"})
        instruments.provider_latency.record(0.1, {CHANNEL: "ios"})
        assert list(tmp_path.iterdir()) == []
        assert instruments.metrics.render() == b""


def test_a_served_process_registers_its_endpoint_and_removes_it_at_exit(tmp_path: Path) -> None:
    """The target file names the endpoint, which serves the instruments' figures over HTTP."""
    settings = Settings(metrics_targets_dir=tmp_path, metrics_port=0)
    with served_instruments(settings, job="notify-worker-sms", instance="slot-3") as instruments:
        instruments.deliveries.add(2, {CHANNEL: "sms"})
        [target] = targets(tmp_path)
        assert (target.job, target.instance, target.path) == ("notify-worker-sms", "slot-3", "/metrics")
        assert target.address.startswith("127.0.0.1:")
        assert total(target.scrape(), "notify_deliveries_total", notify_channel="sms") == 2
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(urllib.error.URLError):
        scrape(target.address)


def test_the_no_op_instruments_are_much_cheaper_than_the_sdks() -> None:
    """Why metrics off means the API's no-op meter, not an SDK provider without a reader."""

    def per_call(instruments: Instruments) -> float:
        labels = {CHANNEL: "ios"}
        began = time.perf_counter()
        for _ in range(2000):
            instruments.deliveries.add(1, labels)
        return (time.perf_counter() - began) / 2000

    assert per_call(Instruments.disabled()) * 3 < per_call(Instruments(Metrics("test")))


def test_e2e_latency_is_never_negative() -> None:
    """A requester's clock ahead of the worker's records 0, not a negative duration."""
    metrics = Metrics("test")
    delivery = DeliveryMetrics(Instruments(metrics), TopicNames("t"), Channel.EMAIL, "smtp")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    delivery.delivered(now + timedelta(seconds=2), now)
    delivery.delivered(None, now)  # a v1 message: no request time, no latency
    delivery.flush()
    found = rendered(metrics)
    assert total(found, "notify_delivery_latency_seconds_count") == 1
    assert total(found, "notify_delivery_latency_seconds_sum") == 0
    assert total(found, "notify_deliveries_total", notify_outcome="delivered") == 2


def test_in_flight_counts_the_calls_under_way_at_each_flush() -> None:
    metrics = Metrics("test")
    delivery = DeliveryMetrics(Instruments(metrics), TopicNames("t"), Channel.ANDROID, "fcm")
    with delivery.call() as first, delivery.call() as second:
        delivery.flush()
        assert total(rendered(metrics), "notify_deliveries_in_flight", notify_channel="android") == 2
        first.outcome = second.outcome = Outcome.retry("UNAVAILABLE")
    delivery.flush()
    assert total(rendered(metrics), "notify_deliveries_in_flight", notify_channel="android") == 0
    assert (
        total(rendered(metrics), "notify_provider_call_duration_seconds_count", notify_outcome="retryable")
        == 2
    )

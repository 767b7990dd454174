"""Label cardinality stays bounded: no user id, token, address or number ever becomes a label value.

The helpers that compute label values are tested directly (``BoundedValues``, ``TopicNames.base``),
then every recording class of the pipeline is driven through a hostile workload (reasons that are
e-mail addresses, phone numbers, device tokens, ids, 5,000 distinct codes) and the rendered
exposition is checked: only known label keys, no value that looks personal, a bounded number of
series, none exposed twice.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from analytics_sink.flusher import SinkStats
from analytics_sink.metrics import SinkMetrics
from consumers.delivery.metrics import DeliveryMetrics
from consumers.delivery.outcome import Outcome
from consumers.router.batch import BatchPlan, Rejected
from consumers.router.metrics import RouterMetrics
from consumers.router.outcome import OutcomeRow
from notify_core.events import Failure
from notify_core.instruments import Instruments
from notify_core.metric_labels import OTHER, BoundedValues, looks_like_code
from notify_core.metrics import Metrics
from notify_core.records import Record
from notify_core.topics import Channel, TopicNames
from tests.metrics_scrape import duplicate_series, samples

PROVIDER_CODES = [
    "BadDeviceToken",
    "Unregistered",
    "ExpiredProviderToken",
    "UNREGISTERED",
    "THIRD_PARTY_AUTH_ERROR",
    "oauth_invalid_grant",
    "ThrottlingException",
    "attempts_exhausted",
    "expired",
    "decode_error",
    "payload_too_large",
    "550",
    "421",
]
PERSONAL = [
    "ada@example.com",
    "<ada@example.com>",
    "+15551234567",
    "15551234567",
    "a" * 64,  # an APNs device token
    "ab12" * 16,
    "fcm-token-000000000001",
    "40d0f485-e615-441a-9498-9bf3b06b55e8",  # fixed ids: xdist workers must collect the same tests
    "7a7cf37ebe354326a2f71cecbf05ecaa",
    "user-12345",
    "contact:17",
    "https://example.com/u/42",
    "Mailbox ada@example.com unknown",
]
# Every label key the pipeline's instruments may carry (Prometheus forms), and the exporter's own.
KEYS = {
    "notify_process",
    "notify_channel",
    "notify_provider",
    "notify_outcome",
    "notify_reason",
    "messaging_destination_name",
    "le",
    "otel_scope_name",
    "otel_scope_version",
    "otel_scope_schema_url",
}
LOOKS_PERSONAL = re.compile(r"@|\+\d|\d{5}|[0-9a-f]{16}|[0-9a-f]{8}-[0-9a-f]{4}|://|:\d")


@pytest.mark.parametrize("code", PROVIDER_CODES)
def test_provider_codes_pass_as_they_are(code: str) -> None:
    assert looks_like_code(code)
    assert BoundedValues()(code) == code


@pytest.mark.parametrize("value", PERSONAL)
def test_anything_that_could_be_personal_is_other(value: str) -> None:
    assert not looks_like_code(value)
    assert BoundedValues()(value) == OTHER


def test_at_most_limit_distinct_values_pass_and_those_keep_passing() -> None:
    """A provider inventing a new code per call adds ``limit`` series, then ``other``."""
    bounded = BoundedValues(limit=3)
    assert [bounded(f"Code{c}") for c in "abcde"] == ["Codea", "Codeb", "Codec", OTHER, OTHER]
    assert bounded("Codeb") == "Codeb"
    assert bounded(None) == bounded("") == ""


def test_topic_labels_drop_the_deployment_prefix() -> None:
    """Two deployments (or two tests) with different prefixes give the same label values."""
    for prefix in ("notifications", f"t-{uuid.uuid4().hex[:10]}"):
        names = TopicNames(prefix)
        assert names.base(names.requests) == "requests"
        assert names.base(names.channel(Channel.IOS)) == "ios"
        assert names.base(names.retry(Channel.IOS, 10)) == "ios.retry.10s"
        assert names.base(names.events_dlq) == "events.dlq"
        assert names.base(names.user_changes) == "user-changes"
        assert names.base(f"{prefix}.something-else") == "other"
        assert names.base("someone.elses") == "other"


def hostile_workload(instruments: Instruments, names: TopicNames) -> None:
    """Every recording class, fed reasons that are personal data or unbounded."""
    reasons = [*PERSONAL, *PROVIDER_CODES, *(f"Code{i}" for i in range(5000))]
    for channel, provider in ((Channel.IOS, "apns"), (Channel.SMS, "sns")):
        delivery = DeliveryMetrics(instruments, names, channel, provider)
        for reason in reasons:
            delivery.retried(reason)
            delivery.dead_lettered(reason)
        with delivery.call() as call:
            call.outcome = Outcome.sent("m-1")
        with pytest.raises(RuntimeError), delivery.call():
            raise RuntimeError("the adapter broke")
        delivery.delivered(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC))
        delivery.paced(0.25)
        delivery.consumed([names.channel(channel), names.retry(channel, 60), "not-ours"])
        delivery.produced(names.events)
        delivery.flush()
    router = RouterMetrics(instruments, names)
    router.consumed(len(reasons))
    router.produced([names.channel(Channel.IOS), names.events, names.requests_dlq])
    rejected = [
        Rejected(Record(names.requests, 0, i, None, b""), Failure(r, "x")) for i, r in enumerate(reasons)
    ]
    plan = BatchPlan()
    plan.outcome_rows = [
        OutcomeRow("n", "svc", reason, "c", "t", "suppressed", reason, (), 0, i)
        for i, reason in enumerate(reasons)
    ]
    router.decided(rejected, plan)
    sink = SinkMetrics(instruments, names)
    sink.consumed(10)
    sink.progress(SinkStats(rows=10, files=1), letters_sent=2)


def test_a_hostile_workload_exposes_only_bounded_impersonal_labels() -> None:
    """Thousands of distinct, personal or malformed reasons end as at most 64 values (+ other) per
    label and recording class, with only the pipeline's label keys, and no series twice."""
    metrics = Metrics("test")
    names = TopicNames(f"t-{uuid.uuid4().hex[:10]}")
    hostile_workload(Instruments(metrics), names)
    found = [s for s in samples(metrics.render().decode()) if s.name.startswith("notify_")]
    assert found
    assert duplicate_series(found) == []
    for sample in found:
        assert set(sample.labels) <= KEYS, sample
        for key, value in sample.labels.items():
            if key != "le":
                assert not LOOKS_PERSONAL.search(value), (sample.name, key, value)
    for name in ("notify_retries_total", "notify_dead_letters_total", "notify_router_requests_total"):
        reasons = {s.labels.get("notify_reason") for s in found if s.name == name}
        # Per recording class at most 64 values and "other"; two channels share the values.
        assert len(reasons) <= 65, (name, len(reasons))
        assert OTHER in reasons
    assert {
        s.labels["messaging_destination_name"] for s in found if "messaging_destination_name" in s.labels
    } == {
        "ios",
        "ios.retry.60s",
        "sms",
        "sms.retry.60s",
        "other",
        "events",
        "requests",
        "requests.dlq",
        "events.dlq",
    }

"""The pipeline's instruments: one place names every metric the processes export.

Names follow OpenTelemetry's conventions (dotted, unit in ``unit``); the Prometheus exporter turns
``notify.deliveries`` into ``notify_deliveries_total`` and a histogram in ``s`` into
``..._seconds_bucket|_sum|_count``. The alert rules and the dashboard (``monitoring/``) name the
Prometheus forms; a test scrapes the real processes and checks every name they use is exported.

Labels are bounded by construction: a channel (4), a provider (4), an outcome or reason from a
closed set, a topic's base name (prefix stripped) and a process kind. Never a user id, a token, an
address or a notification id.
"""

from __future__ import annotations

from notify_core.metrics import Metrics
from notify_core.settings import Settings

# Seconds: from a sub-millisecond provider answer to a delivery that waited out retries.
SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

# Label keys (OpenTelemetry attribute names; Prometheus shows them with '_' for '.').
PROCESS = "notify.process"  # router | worker | sink | api
CHANNEL = "notify.channel"  # ios | android | sms | email
PROVIDER = "notify.provider"  # apns | fcm | sns | smtp
OUTCOME = "notify.outcome"
REASON = "notify.reason"
TOPIC = "messaging.destination.name"  # the topic's base name, without the deployment's prefix


class Instruments:
    """Every counter, histogram and gauge of the pipeline, on one ``Metrics``.

    Processes take one (``Router``, ``Worker``, ``Sink``); ``disabled()`` is what they use when given
    none: the same instruments as no-ops, so recording code never branches on whether metrics are on.
    """

    @classmethod
    def from_settings(cls, settings: Settings, service_name: str) -> Instruments:
        """On a ``Metrics`` of their own, enabled as ``settings.metrics_enabled`` says."""
        return cls(Metrics(service_name, enabled=settings.metrics_enabled))

    @classmethod
    def disabled(cls) -> Instruments:
        return cls(Metrics("notify", enabled=False))

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        meter = metrics.meter("notify")
        self.consumed = meter.create_counter(
            "notify.messages.consumed", unit="{message}", description="Records consumed, by process and topic"
        )
        self.produced = meter.create_counter(
            "notify.messages.produced", unit="{message}", description="Records produced, by process and topic"
        )
        # outcome: routed | suppressed | invalid | duplicate | deferred; reason for suppressed/invalid.
        self.routed = meter.create_counter(
            "notify.router.requests", unit="{request}", description="Requests the router decided, by outcome"
        )
        # outcome: delivered | failed | retried | dead_lettered | skipped (already sent: no double send).
        # One per record a worker finishes with: dead_lettered is any end on the DLQ (a permanent
        # refusal, attempts exhausted, expired, unreadable, an internal error); failed is an end with
        # not even a dead letter written; a busy lease deferred to a retry topic is not counted.
        self.deliveries = meter.create_counter(
            "notify.deliveries", unit="{delivery}", description="Delivery attempts ended, by outcome"
        )
        self.retries = meter.create_counter(
            "notify.retries", unit="{delivery}", description="Deliveries scheduled for another attempt"
        )
        self.dead_letters = meter.create_counter(
            "notify.dead_letters", unit="{record}", description="Records dead-lettered, by reason"
        )
        self.e2e_latency = meter.create_histogram(
            "notify.delivery.latency",
            unit="s",
            description="From the request's creation to the provider's acceptance",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        # outcome: accepted | retryable | permanent | error
        self.provider_latency = meter.create_histogram(
            "notify.provider.call.duration",
            unit="s",
            description="One provider call, by outcome",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self.in_flight = meter.create_up_down_counter(
            "notify.deliveries.in_flight", unit="{delivery}", description="Provider calls under way"
        )
        self.rate_limit_waits = meter.create_counter(
            "notify.rate_limit.waits", unit="{wait}", description="Calls that waited for the rate limit"
        )
        self.rate_limit_wait_time = meter.create_counter(
            "notify.rate_limit.wait.time", unit="s", description="Time spent waiting for the rate limit"
        )
        self.sink_rows = meter.create_counter(
            "notify.sink.rows", unit="{row}", description="Events written to Parquet"
        )
        self.sink_files = meter.create_counter(
            "notify.sink.files", unit="{file}", description="Parquet files written"
        )

"""The project's own Prometheus: it finds a process's /metrics through file_sd and loads our alerts."""

from __future__ import annotations

import time

import pytest

from notify_core.instruments import CHANNEL, OUTCOME, PROVIDER, Instruments
from notify_core.metrics import Metrics
from notify_core.metrics_server import serve_metrics
from notify_core.stack import prometheus
from tests.prometheus_harness import PrometheusServer, Sample, prometheus_server

pytestmark = pytest.mark.integration
__all__ = ["prometheus_server"]

ALERTS = {
    "NotifyConsumerLagHigh",
    "NotifyConsumerLagCritical",
    "NotifyConsumerLagGrowing",
    "NotifyConsumerStalled",
    "NotifyConsumerStopped",
    "NotifyLagExporterDown",
    "NotifyDeadLetterRateHigh",
    "NotifyProviderErrorRateHigh",
    "NotifyNoDeliveries",
}


def _value(result: list[Sample]) -> float:
    return sum(float(sample["value"][1]) for sample in result)


def test_a_registered_endpoint_is_scraped_and_its_counter_queryable(
    prometheus_server: PrometheusServer,
) -> None:
    """A Metrics served with serve_metrics registers a file_sd target under the monitoring folder;
    Prometheus picks it up and the counter's value arrives, with the target's job label, and grows."""
    metrics = Metrics("test-prometheus")
    instruments = Instruments(metrics)
    labels = {CHANNEL: "sms", PROVIDER: "sns", OUTCOME: "delivered"}
    instruments.deliveries.add(3, labels)
    endpoint = serve_metrics(metrics, prometheus_server.settings, job="notify-worker-sms", instance="t1")
    assert endpoint is not None
    try:
        assert (
            endpoint.target.path.parent == prometheus.PrometheusPaths.of(prometheus_server.settings).targets
        )
        promql = 'notify_deliveries_total{job="notify-worker-sms",notify_instance="t1",notify_channel="sms"}'
        result = prometheus_server.wait_for(promql)
        assert _value(result) == 3.0
        assert result[0]["metric"]["notify_outcome"] == "delivered"
        instruments.deliveries.add(2, labels)
        prometheus_server.wait_for(promql, lambda r: _value(r) == 5.0)
        up = prometheus_server.wait_for('up{job="notify-worker-sms"} == 1')
        assert up[0]["metric"]["instance"] == endpoint.url.split("/")[2]
    finally:
        endpoint.close()
        metrics.shutdown()


def test_the_alert_rules_are_loaded(prometheus_server: PrometheusServer) -> None:
    """Prometheus loads monitoring/alerts.yml: every alert rule is there, and each evaluates without
    error within seconds (1 s evaluation interval)."""
    rules = prometheus_server.rules()
    assert {rule["name"] for rule in rules if rule["type"] == "alerting"} == ALERTS
    deadline = time.monotonic() + 30
    while any(rule["health"] != "ok" for rule in rules):
        assert time.monotonic() < deadline, [(r["name"], r["health"], r.get("lastError")) for r in rules]
        time.sleep(0.25)
        rules = prometheus_server.rules()


def test_status_names_our_server_and_stop_stops_it(prometheus_server: PrometheusServer) -> None:
    """`stack status` reports our Prometheus as ours and ready; `stop` ends it and says so, once."""
    settings = prometheus_server.settings
    assert prometheus.status(settings).startswith("prometheus ours, pid ")
    assert prometheus.start(settings, interval_s=1.0)[-1].endswith("config reloaded")
    assert prometheus.stop(settings)[0].startswith("prometheus: stopped (pid ")
    assert not prometheus.ready(settings)
    assert prometheus.stop(settings) == ["prometheus: not started by us, nothing to stop"]
    assert prometheus.status(settings).startswith("prometheus stopped")

"""Metrics through the OpenTelemetry SDK, exported for Prometheus (pure set-up, no server).

``Metrics`` owns one ``MeterProvider`` whose reader is an ``opentelemetry-exporter-prometheus``
reader on a registry of its own (not prometheus_client's global one: two apps in one process, as in
tests, must not report each other's figures). ``render()`` is the text exposition a ``/metrics``
endpoint serves.

``Metrics(name, enabled=False)`` (``NOTIFY_METRICS_ENABLED=false``) hands out the OpenTelemetry API's
no-op instruments instead, and renders nothing: measured ~0.2 µs a call against ~7 µs for the
SDK's (an SDK provider without a reader still costs ~4.5 µs: it cleans and hashes the attributes).
"""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, service_name: str, *, enabled: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.enabled = enabled
        self._provider: MeterProvider | None = None
        if enabled:
            self._reader = PrometheusMetricReader(registry=self.registry)
            self._provider = MeterProvider(
                metric_readers=[self._reader], resource=Resource.create({"service.name": service_name})
            )

    def meter(self, name: str) -> Meter:
        if self._provider is None:
            return NoOpMeterProvider().get_meter(name)
        return self._provider.get_meter(name)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()

"""Consumer lag as Prometheus gauges, for ``notify lag --serve``.

The gauges are OpenTelemetry observable gauges read from the latest reports at scrape time, so a
scrape costs no broker round trip; the sampling loop replaces the reports every interval. Labels
follow the messaging conventions (group, topic, partition): bounded by the pipeline's topics.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from notify_core.lag import GroupReport
from notify_core.metrics import Metrics

GROUP = "messaging.consumer.group.name"
TOPIC = "messaging.destination.name"
PARTITION = "messaging.destination.partition.id"


class LagGauges:
    """``notify_consumer_lag``, ``..._lag_age_seconds`` per partition, and per-group totals and status."""

    def __init__(self, metrics: Metrics) -> None:
        self._lock = threading.Lock()
        self._reports: list[GroupReport] = []
        meter = metrics.meter("notify.lag")
        gauges = (
            ("notify.consumer.lag", "{message}", "Messages not yet consumed, per partition", self._lag),
            (
                "notify.consumer.lag.age",
                "s",
                "Age of the oldest unconsumed message, per partition",
                self._age,
            ),
            ("notify.consumer.group.lag", "{message}", "Messages not yet consumed by the group", self._total),
            (
                "notify.consumer.group.lag.age",
                "s",
                "Age of the group's oldest unconsumed message",
                self._max_age,
            ),
            (
                "notify.consumer.group.status",
                "1",
                "0 OK, 1 WARNING, 2 STALLED, 3 STOPPED (Burrow)",
                self._status,
            ),
            ("notify.consumer.group.members", "{member}", "Members of the group", self._members),
        )
        for name, unit, description, callback in gauges:
            meter.create_observable_gauge(name, callbacks=[callback], unit=unit, description=description)

    def update(self, reports: list[GroupReport]) -> None:
        with self._lock:
            self._reports = list(reports)

    def _current(self) -> list[GroupReport]:
        with self._lock:
            return self._reports

    def _partitions(self, age: bool) -> Iterable[Observation]:
        for report in self._current():
            for p in report.sample.partitions:
                value = p.age_s if age else p.lag
                if value is not None:
                    labels = {GROUP: report.sample.group, TOPIC: p.topic, PARTITION: str(p.partition)}
                    yield Observation(value, labels)

    def _lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._partitions(age=False)

    def _age(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._partitions(age=True)

    def _total(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(r.sample.total_lag, {GROUP: r.sample.group}) for r in self._current()]

    def _max_age(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(r.sample.max_age_s, {GROUP: r.sample.group}) for r in self._current()]

    def _status(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(int(r.status), {GROUP: r.sample.group}) for r in self._current()]

    def _members(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(r.sample.members, {GROUP: r.sample.group}) for r in self._current()]

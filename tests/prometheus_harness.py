"""A real Prometheus for tests: our own server (``notify_core.stack.prometheus``), fast and private.

``prometheus_server`` (a fixture; import it and name it in ``__all__``) starts one with a 1 s scrape
and evaluation interval, on a free loopback port, with its monitoring folder (config, data, file_sd
targets) in the test's ``tmp_path``. ``PrometheusServer.settings`` carries that folder as
``cache_dir``, so a ``serve_metrics(..., settings)`` registers its endpoint where this Prometheus
looks. ``query``, ``wait_for``, ``rules``, ``alerts`` and ``wait_for_alert`` read its HTTP API.
``promtool`` is the path of the ``promtool`` the unit tests run, or a clear failure.
``exported_names`` is every metric name the processes and the lag exporter really render;
``metric_names`` the metric names a PromQL expression reads (for the dashboard and alert tests).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from notify_core.instruments import Instruments
from notify_core.lag import GroupReport, GroupSample, PartitionLag, Status
from notify_core.lag_exporter import LagGauges
from notify_core.metrics import Metrics
from notify_core.metrics_server import free_port
from notify_core.settings import Settings
from notify_core.stack import prometheus

Sample = dict[str, Any]
NOT_NAMES = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
NOT_NAMES |= {"offset", "inf", "nan"}
# Written by Prometheus itself for every target, not by a process.
SCRAPE_METRICS = {"up"}


def promtool() -> str:
    """promtool's path; a failure (never a skip) that says how to install it when it is missing."""
    if not prometheus.PROMTOOL.exists():
        pytest.fail(
            f"{prometheus.PROMTOOL} is missing: run `make up` (it installs Debian's prometheus package)"
        )
    return str(prometheus.PROMTOOL)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are no function, keyword, label or
    duration (strings, label matchers, ranges and grouping clauses are removed first)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group().lower() in NOT_NAMES:
            continue
        names.add(match.group())
    return names


def _rendered(metrics: Metrics) -> set[str]:
    text = metrics.render().decode()
    metrics.shutdown()
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and line[0] != "#"}


def exported_names() -> set[str]:
    """Every name a /metrics of ours can show: each instrument of ``Instruments`` recorded once and
    the lag exporter's gauges with one group observed, rendered by the real exporter; plus ``up``."""
    metrics = Metrics("names")
    for attribute, instrument in vars(Instruments(metrics)).items():
        if attribute == "metrics":
            continue
        if hasattr(instrument, "record"):
            instrument.record(0.1, {})
        else:
            instrument.add(1, {})
    lag_metrics = Metrics("lag-names")
    sample = GroupSample("notify-sms", 0.0, 1, "Stable", (PartitionLag("sms", 0, 1, 2, 1.0),))
    LagGauges(lag_metrics).update([GroupReport(sample, Status.OK)])
    return _rendered(metrics) | _rendered(lag_metrics) | SCRAPE_METRICS


@dataclass(frozen=True)
class PrometheusServer:
    settings: Settings

    @property
    def url(self) -> str:
        return prometheus.url(self.settings)

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as answer:  # noqa: S310
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[Sample]:
        """An instant query's vector: [{"metric": {...}, "value": [time, "text"]}, ...]."""
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        result: list[Sample] = data["result"]
        return result

    def wait_for(
        self,
        promql: str,
        until: Callable[[list[Sample]], bool] = bool,
        *,
        timeout_s: float = 30.0,
    ) -> list[Sample]:
        """Poll ``promql`` until ``until(result)`` (default: any sample); fail after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        result = self.query(promql)
        while not until(result):
            if time.monotonic() > deadline:
                pytest.fail(f"{promql!r} did not reach the expected result in {timeout_s:g}s: {result}")
            time.sleep(0.25)
            result = self.query(promql)
        return result

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule, over all groups (name, query, state, labels, ...)."""
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing), each with labels, annotations, state and value."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def wait_for_alert(
        self,
        name: str,
        state: str = "firing",
        *,
        labels: dict[str, str] | None = None,
        timeout_s: float = 90.0,
    ) -> dict[str, Any]:
        """The first alert ``name`` in ``state`` ("pending" or "firing") whose labels include ``labels``."""
        wanted = labels or {}
        deadline = time.monotonic() + timeout_s
        while True:
            for alert in self.alerts():
                tags = alert["labels"]
                matches = all(tags.get(key) == value for key, value in wanted.items())
                if tags.get("alertname") == name and alert["state"] == state and matches:
                    return alert
            if time.monotonic() > deadline:
                pytest.fail(f"no {state} {name} alert with {wanted} within {timeout_s:g}s: {self.alerts()}")
            time.sleep(0.5)


@contextmanager
def running_prometheus(
    base: Settings, folder: Path, *, interval_s: float = 1.0
) -> Iterator[PrometheusServer]:
    """Our Prometheus with its files under ``folder``, on a free port; stopped on exit."""
    # Processes given these settings serve metrics and register where this Prometheus looks.
    update = {
        "cache_dir": folder,
        "metrics_enabled": True,
        "metrics_targets_dir": None,
        "prometheus_port": free_port(),
    }
    settings = base.model_copy(update=update)
    prometheus.start(settings, interval_s=interval_s)
    try:
        yield PrometheusServer(settings)
    finally:
        prometheus.stop(settings)


@pytest.fixture
def prometheus_server(base_settings: Settings, tmp_path: Path) -> Iterator[PrometheusServer]:
    """A private Prometheus scraping and evaluating every second, its monitoring folder in tmp_path."""
    with running_prometheus(base_settings, tmp_path / "cache") as server:
        yield server

"""The Grafana dashboard: every query is valid PromQL and names only metrics that are exported.

The exported names are what the processes really render (every instrument of ``Instruments``
recorded once, and the lag exporter's ``LagGauges``, through the OpenTelemetry Prometheus exporter).
The expressions are checked by promtool, as recording rules, once Grafana's variables are substituted.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.prometheus_harness import exported_names, metric_names, promtool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "dashboard.json"
# The lag exporter's gauges (`notify lag --serve`) the dashboard and the alerts are built on.
LAG_METRICS = {
    "notify_consumer_lag",
    "notify_consumer_lag_age_seconds",
    "notify_consumer_group_lag",
    "notify_consumer_group_lag_age_seconds",
    "notify_consumer_group_status",
    "notify_consumer_group_members",
}
# Grafana's built-in interval variables, as a plausible value each.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h"}


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in panels:
        out += [panel, *_panels(panel.get("panels", []))]
    return out


def _expressions() -> list[str]:
    return [t["expr"] for p in _panels(_dashboard()["panels"]) for t in p.get("targets", [])]


def _substituted(expr: str) -> str:
    """``expr`` as Prometheus would get it: interval variables filled, template variables ``.*``."""
    variables = {v["name"] for v in _dashboard()["templating"]["list"]}
    for name, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(name, value)
    for name in variables:
        expr = expr.replace(f"${{{name}}}", ".*").replace(f"${name}", ".*")
    assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
    return expr


def test_metric_names_finds_metrics_and_nothing_else() -> None:
    """The name extractor skips functions, grouping labels, matchers, strings and durations."""
    expr = (
        'histogram_quantile(0.99, sum by (le, notify_channel) (rate(a_bucket{x="y",z=~"$v"}[5m])))'
        " / on (notify_channel) group_left b_total offset 5m > bool 0.5 unless c"
        ' or label_replace(d, "dst", "$1", "src", "(.*)") and 1e3'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def test_the_lag_exporter_exports_the_lag_metrics() -> None:
    """The lag gauges the dashboard and alerts rely on are what LagGauges really renders."""
    assert exported_names() >= LAG_METRICS


def test_the_dashboard_has_a_datasource_variable_and_uses_it_everywhere() -> None:
    """A Prometheus ``${datasource}`` variable, schemaVersion 39, unique panel ids, and every panel
    and query reads from the chosen datasource (importable into any Grafana)."""
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] == 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = _panels(dashboard["panels"])
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool accepts every panel query (as a recording rule), Grafana variables substituted."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _substituted(e)} for i, e in enumerate(_expressions())
    ]
    assert len(rules) >= 20
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    done = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_the_dashboard_names_is_exported() -> None:
    """No panel queries a metric that no process (or the lag exporter, or Prometheus) exports."""
    known = exported_names()
    queried = set().union(*(metric_names(_substituted(e)) for e in _expressions()))
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            queried |= set(re.findall(r"label_values\((\w+)", variable["definition"]))
    assert queried, "no metric names found"
    assert queried <= known, f"not exported: {sorted(queried - known)}"


@pytest.mark.parametrize(
    "needed",
    [
        "notify_consumer_group_lag",
        "notify_consumer_group_lag_age_seconds",
        "notify_consumer_group_status",
        "notify_messages_consumed_total",
        "notify_messages_produced_total",
        "notify_deliveries_total",
        "notify_delivery_latency_seconds_bucket",
        "notify_provider_call_duration_seconds_bucket",
        "notify_provider_call_duration_seconds_count",
        "notify_deliveries_in_flight",
        "notify_rate_limit_waits_total",
        "notify_retries_total",
        "notify_dead_letters_total",
        "notify_sink_rows_total",
    ],
)
def test_the_dashboard_covers(needed: str) -> None:
    """Each view the SREs asked for has a panel querying its metric."""
    assert any(needed in metric_names(_substituted(e)) for e in _expressions())


def test_end_to_end_latency_shows_p50_p95_p99() -> None:
    """The e2e latency panel draws the three quantiles from the delivery latency histogram."""
    latency = [e for e in _expressions() if "notify_delivery_latency_seconds_bucket" in e]
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(e.startswith(f"histogram_quantile({quantile},") for e in latency), quantile

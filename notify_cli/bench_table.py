"""The benchmark table (pure): each stage's figure beside its same-run baseline, ratio and goal.

``rows_for(kind, figures)`` reads the figures one ``notify bench KIND`` wrote; a missing key means the
stage's output changed shape, which is a ``KeyError`` here rather than a silently empty row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

MIN_SCALE_OUT_CPUS = 4
CHANNEL_CLIENTS = {
    "ios": "aioapns",
    "android": "aiohttp FCM v1",
    "sms": "boto3 SNS",
    "email": "aiosmtplib pool",
}


@dataclass(frozen=True)
class Row:
    stage: str
    figure: str
    baseline_name: str
    baseline: str
    ratio: float | None  # figure / baseline, where they are the same unit
    goal: str = ""
    met: bool | None = None  # None: no goal for this row

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _per_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}/s"


def _ratio(figure: float, baseline: float) -> float | None:
    return round(figure / baseline, 3) if baseline else None


def _produce(f: dict[str, Any]) -> list[Row]:
    sdk = f["sdk_batch"]["requests_per_s"]
    goal = f["goals"]
    row = Row(
        "SDK ingest (send_batch)",
        _per_s(sdk),
        "fastavro encode alone",
        _per_s(f["encode_alone"]["records_per_s"]),
        f["sdk_vs_encode"],
        f">= {goal['sdk_vs_encode_min']:.2f} and >= {goal['sdk_per_s_min']:,}/s",
        goal["met"],
    )
    raw = f["raw_kafka"]["records_per_s"]
    java = f["producer_performance"]["records_per_s"]
    return [
        row,
        Row(
            "  same, vs raw producer",
            _per_s(sdk),
            "confluent-kafka, same bytes",
            _per_s(raw),
            _ratio(sdk, raw),
        ),
        Row("  same, vs Kafka's tool", _per_s(sdk), "ProducerPerformance", _per_s(java), _ratio(sdk, java)),
    ]


def _api(f: dict[str, Any]) -> list[Row]:
    batch, sdk, single, goals = f["batch_endpoint"], f["sdk_send_batch"], f["single_post"], f["goals"]
    return [
        Row(
            "HTTP ingest, batch",
            _per_s(batch["notifications_per_s"]),
            "SDK send_batch",
            _per_s(sdk["notifications_per_s"]),
            f["batch_vs_sdk"],
            f">= {goals['batch_vs_sdk_min']:.2f}",
            goals["batch_met"],
        ),
        Row(
            f"HTTP ingest, single (p99 {single['latency']['p99_ms']:.0f} ms)",
            _per_s(single["achieved_rps"]),
            "offered rate",
            _per_s(single["target_rps"]),
            _ratio(single["achieved_rps"], single["target_rps"]),
            f"p99 <= {goals['single_p99_max_ms']:g} ms",
            goals["single_met"],
        ),
    ]


def _router(f: dict[str, Any]) -> list[Row]:
    goals = f["goals"]
    return [
        Row(
            "router",
            _per_s(f["router"]["requests_per_s"]),
            f"txn pass-through, {f['fan_out']['records_per_request']:g} out/in",
            _per_s(f["equal_fan_out_passthrough"]["requests_per_s"]),
            f["router_vs_passthrough"],
            f">= {goals['router_vs_passthrough_min']:.2f}",
            goals["met"],
        )
    ]


def _delivery(f: dict[str, Any]) -> list[Row]:
    rows = []
    for channel, client in CHANNEL_CLIENTS.items():
        if channel not in f:
            continue
        c = f[channel]
        ratio = c["worker_vs_bare"]
        rows.append(
            Row(
                f"{channel} worker",
                _per_s(c["deliveries_per_s"]),
                f"bare {client}, same sandbox",
                _per_s(c["bare_client"]["deliveries_per_s"]),
                ratio,
                ">= 0.80",
                ratio is not None and ratio >= 0.80,
            )
        )
    if not rows:
        raise KeyError("the delivery figures hold no channel")
    return rows


def _sink(f: dict[str, Any]) -> list[Row]:
    return [
        Row(
            "analytics sink",
            _per_s(f["sink"]["events_per_s"]),
            "raw consume + decode",
            _per_s(f["raw_consume_decode_baseline"]["events_per_s"]),
            f["sink_vs_baseline"],
            f">= {f['goals']['sink_vs_baseline_min']:.2f}",
            f["goals"]["met"],
        )
    ]


def _e2e(f: dict[str, Any]) -> list[Row]:
    rows = []
    for point in f["rates"]:
        rate, lat = point["offered_per_s"], point["latency"]
        goal = rate == 500
        p99 = lat["p99_ms"] if lat else None
        rows.append(
            Row(
                f"end to end at {rate}/s" + (f" (p50 {lat['p50_ms']:,.0f} ms)" if lat else ""),
                f"p99 {p99:,.0f} ms" if p99 is not None else "nothing received",
                "p95",
                f"{lat['p95_ms']:,.0f} ms" if lat else "",
                None,
                "p99 <= 250 ms" if goal else "p99 < 1 s",
                (p99 is not None and p99 <= 250) if goal else bool(point["p99_under_1s"]),
            )
        )
    sustainable = f["sustainable_rate_p99_under_1s"]
    rows.append(
        Row("sustainable rate, p99 < 1 s", _per_s(sustainable) if sustainable else "none", "", "", None)
    )
    catch = f["catchup"]
    rows.append(
        Row(
            f"catch-up of {catch['requests']:,}",
            _per_s(catch["requests_per_s"]),
            "drained in",
            f"{catch['seconds']:,.0f} s",
            None,
        )
    )
    scale = f["scale_out"]
    ratio = scale["ratio"]
    # Two of each of nine processes, plus the broker and the database, need more than a few cores to
    # run side by side: on fewer the goal does not apply and the row says so instead of failing.
    cores_allow = (f.get("cpus") or 0) >= MIN_SCALE_OUT_CPUS
    rows.append(
        Row(
            "scale-out, 2 of each",
            _per_s(scale["two"]["requests_per_s"]),
            "1 of each",
            _per_s(scale["one"]["requests_per_s"]),
            ratio,
            ">= 1.6" if cores_allow else f">= 1.6 needs {MIN_SCALE_OUT_CPUS}+ cores (n/a here)",
            (ratio is not None and ratio >= 1.6) if cores_allow else None,
        )
    )
    return rows


_BUILDERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "produce": _produce,
    "api": _api,
    "router": _router,
    "delivery": _delivery,
    "sink": _sink,
    "e2e": _e2e,
}


def rows_for(kind: str, figures: dict[str, Any]) -> list[Row]:
    return _BUILDERS[kind](figures)


def slowest(rows: list[Row]) -> Row | None:
    """The stage furthest below its baseline: the lowest ratio among rows that compare throughput."""
    compared = [r for r in rows if r.ratio is not None and r.baseline_name and not r.stage.startswith(" ")]
    compared = [
        r for r in compared if r.baseline_name != "offered rate" and r.stage != "scale-out, 2 of each"
    ]
    return min(compared, key=lambda r: r.ratio or 0.0, default=None)

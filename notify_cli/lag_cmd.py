"""``notify lag``: consumer lag of the pipeline's groups, in messages and seconds, with a status.

Without names it covers every group of the pipeline that exists (router, one per channel, sink);
named groups must exist. Per partition: committed offset, log end offset, lag, and the age of the
oldest unconsumed message; per group: totals and a Burrow-style status over a window of looks
(``notify_core.lag``). A one-shot run takes ``--samples`` looks ``--interval`` apart, so it can tell
a moving consumer from a stalled one. ``--watch`` redraws in place; ``--format json`` prints the
same data (one JSON document per refresh with ``--watch``); ``--serve PORT`` exports it all as
Prometheus gauges at ``/metrics`` and registers itself for the local Prometheus.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

import structlog

from notify_core.exceptions import NotifyError
from notify_core.lag import GroupReport, LagWindow, reports
from notify_core.lag_exporter import LagGauges
from notify_core.lag_probe import LagProbe, pipeline_groups
from notify_core.metrics import Metrics
from notify_core.metrics_server import MetricsEndpoint
from notify_core.settings import Settings

CLEAR = "\x1b[H\x1b[2J"
log = structlog.get_logger("lag")


def register(commands: Any) -> None:
    parser = commands.add_parser("lag", help="consumer lag per group, topic and partition, with a status")
    parser.add_argument(
        "groups", nargs="*", metavar="GROUP", help="consumer groups (default: the pipeline's)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--watch", action="store_true", help="refresh every --interval until interrupted")
    parser.add_argument("--serve", type=int, metavar="PORT", help="export as Prometheus metrics on PORT")
    parser.add_argument("--interval", type=_positive, help="seconds between looks (default 1.5; serve: 5)")
    parser.add_argument("--samples", type=int, default=3, help="looks a one-shot run takes (default 3)")
    parser.add_argument(
        "--window", type=int, help="looks a status is judged over (default NOTIFY_LAG_WINDOW)"
    )
    parser.set_defaults(handler=run)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.samples < 1:
        print("notify lag: --samples must be at least 1", file=sys.stderr)
        return 2
    if args.window is not None and args.window < 2:
        print("notify lag: --window must be at least 2 (movement needs two looks)", file=sys.stderr)
        return 2
    window = LagWindow(args.window or settings.lag_window)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    probe = LagProbe(settings)
    try:
        if args.serve is not None:
            return _serve(args, settings, probe, window, stop)
        interval = args.interval or 1.5
        looks = 0
        while True:
            missing, groups = _look(args, settings, probe, window)
            looks += 1
            if missing and args.groups:
                print(f"notify lag: no such consumer group: {', '.join(missing)}", file=sys.stderr)
                return 1
            if args.watch:
                _show(args, reports(window, groups), missing, clear=sys.stdout.isatty())
            elif looks >= args.samples:
                _show(args, reports(window, groups), missing, clear=False)
                return 0
            if stop.wait(interval):
                return 0
    finally:
        probe.close()


def _look(
    args: argparse.Namespace, settings: Settings, probe: LagProbe, window: LagWindow
) -> tuple[list[str], list[str]]:
    """Sample every group once into ``window``: (groups not found, groups sampled)."""
    wanted = args.groups or pipeline_groups(settings)
    missing, found = [], []
    for group in wanted:
        sample = probe.sample(group)
        if sample is None:
            missing.append(group)
        else:
            window.add(sample)
            found.append(group)
    return missing, found


def _serve(
    args: argparse.Namespace, settings: Settings, probe: LagProbe, window: LagWindow, stop: threading.Event
) -> int:
    metrics = Metrics("notify-lag")
    gauges = LagGauges(metrics)
    endpoint = MetricsEndpoint(
        metrics, settings.model_copy(update={"metrics_port": args.serve}), job="notify-lag", instance="0"
    )
    print(f"notify lag: serving {endpoint.url}", file=sys.stderr, flush=True)
    try:
        while True:
            try:
                _, groups = _look(args, settings, probe, window)
                gauges.update(reports(window, groups))
            except NotifyError as exc:  # the broker away for a look: keep serving the last figures
                log.warning("lag_look_failed", error=str(exc))
            if stop.wait(args.interval or settings.lag_interval_s):
                return 0
    finally:
        endpoint.close()
        metrics.shutdown()


def _show(args: argparse.Namespace, found: list[GroupReport], missing: list[str], *, clear: bool) -> None:
    if args.format == "json":
        print(json.dumps({"groups": [r.as_dict() for r in found], "not_found": missing}), flush=True)
        return
    print((CLEAR if clear else "") + render_table(found, missing), flush=True)


def render_table(found: list[GroupReport], missing: list[str]) -> str:
    """Per group a header (status, members, totals), then one line per partition."""
    lines: list[str] = []
    for report in found:
        s = report.sample
        lines.append(
            f"{s.group}  {report.status.name}  state={s.state} members={s.members}"
            f"  lag={s.total_lag:,} messages ({s.total_waiting:,} waiting), oldest {s.max_age_s:,.1f}s"
        )
        lines.append(
            f"  {'TOPIC':<40} {'PART':>4} {'COMMITTED':>12} {'LOG-END':>12}"
            f" {'LAG':>10} {'WAITING':>8} {'LAG-S':>9}"
        )
        for p in s.partitions:
            committed = "-" if p.committed is None else f"{p.committed}"
            lag = "-" if p.lag is None else f"{p.lag}"
            age = "-" if p.age_s is None else f"{p.age_s:.1f}"
            waiting = "-" if p.waiting is None else f"{p.waiting}"
            lines.append(
                f"  {p.topic:<40} {p.partition:>4} {committed:>12} {p.log_end:>12}"
                f" {lag:>10} {waiting:>8} {age:>9}"
            )
        lines.append("")
    if missing:
        lines.append(f"not found (never consumed, or deleted): {', '.join(missing)}")
    if found:
        lines.append(
            "LAG counts offsets as Kafka's tool does; WAITING leaves out transaction markers and retries"
            " not due yet; LAG-S is how long the oldest record has waited (a retry: since it was due)."
        )
    return "\n".join(lines).rstrip() + "\n"

"""``notify bench observability``: what metrics and tracing cost the router and the workers.

Runs ``notify bench router`` and ``notify bench delivery`` in child processes, each twice in one run:
with the defaults (metrics served, tracing on: spans made and their context carried in headers, no
exporter) and with both off (``NOTIFY_METRICS_ENABLED=false``, ``NOTIFY_TRACING_ENABLED=false``),
alternating on, off, on, off so a drift of the machine's speed hits both alike. Children, so each
pass installs its own tracer provider and meter like a real process. Prints the figures side by side
with their ratio and writes them to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notify_core.settings import Settings

MODES = {
    "on": {"NOTIFY_METRICS_ENABLED": "true", "NOTIFY_TRACING_ENABLED": "true"},
    "off": {"NOTIFY_METRICS_ENABLED": "false", "NOTIFY_TRACING_ENABLED": "false"},
}


def register_kind(kinds: Any) -> None:
    parser = kinds.add_parser("observability", help="router and worker speed, metrics and tracing on vs off")
    parser.add_argument("--router-count", type=int, default=20_000)
    parser.add_argument("--delivery-count", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs per benchmark")
    parser.add_argument("--channel", action="append", dest="channels", help="delivery channels (default all)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/observability.json"))
    parser.set_defaults(handler=run)


def _child(kind: list[str], mode: str, folder: Path) -> dict[str, Any]:
    out = folder / f"{kind[0]}-{mode}-{len(list(folder.iterdir()))}.json"
    done = subprocess.run(
        [sys.executable, "-m", "notify_cli", "bench", *kind, "--out", str(out)],
        env={**os.environ, **MODES[mode]},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"notify bench {kind[0]} ({mode}) failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    figures: dict[str, Any] = json.loads(out.read_text("utf-8"))
    return figures


def _rates(figures: dict[str, Any]) -> dict[str, float]:
    """The figure each benchmark is judged by: router requests/s, deliveries/s per channel."""
    if figures.get("benchmark") == "router":
        return {"router": float(figures["router"]["requests_per_s"])}
    return {
        channel: float(value["deliveries_per_s"])
        for channel, value in figures.items()
        if isinstance(value, dict) and "deliveries_per_s" in value
    }


def run(args: argparse.Namespace, settings: Settings) -> int:
    delivery = ["delivery", "--count", str(args.delivery_count)]
    for channel in args.channels or []:
        delivery += ["--channel", channel]
    kinds = [["router", "--count", str(args.router_count)], delivery]
    passes: dict[str, dict[str, list[float]]] = {"on": {}, "off": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for kind in kinds:
            for _ in range(args.rounds):
                for mode in ("on", "off"):
                    for name, rate in _rates(_child(kind, mode, Path(scratch))).items():
                        passes[mode].setdefault(name, []).append(rate)
                        print(f"  {name:8} {mode:3} {rate:>9,.0f}/s", flush=True)
    rows = {}
    print(f"\n  {'stage':8} {'on (median)':>12} {'off (median)':>13} {'on/off':>7}")
    for name in passes["off"]:
        on, off = statistics.median(passes["on"][name]), statistics.median(passes["off"][name])
        rows[name] = {
            "on_per_s": round(on),
            "off_per_s": round(off),
            "ratio": round(on / off, 3),
            "on_passes": passes["on"][name],
            "off_passes": passes["off"][name],
        }
        print(f"  {name:8} {on:>12,.0f} {off:>13,.0f} {on / off:>7.2f}")
    result = {
        "benchmark": "observability",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "modes": MODES,
        "router_count": args.router_count,
        "delivery_count": args.delivery_count,
        "rounds": args.rounds,
        "figures": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"figures -> {args.out}")
    return 0

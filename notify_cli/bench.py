"""``notify bench KIND``: benchmarks against the real broker, each next to its baseline in the same run.

``notify bench all`` (``make bench``) runs every stage and writes one results file; the other kinds run
one stage each and write their own figures (``--out``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from notify_cli import (
    bench_api,
    bench_delivery,
    bench_e2e,
    bench_observability,
    bench_produce,
    bench_router,
    bench_sink,
    bench_suite,
)
from notify_core.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser("bench", help="benchmarks against the real broker")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    produce = kinds.add_parser(
        "produce", help="SDK batch throughput vs encode alone, raw producer, Kafka's tool"
    )
    produce.add_argument("--count", type=int, default=100_000, help="requests for the throughput passes")
    produce.add_argument("--latency-count", type=int, default=1_000, help="sequential sends for latency")
    produce.add_argument("--out", type=Path, default=Path("bench-results/producer.json"))
    produce.set_defaults(handler=run_produce)
    bench_router.register_kind(kinds)
    bench_delivery.register_kind(kinds)
    bench_api.register_kind(kinds)
    bench_sink.register_kind(kinds)
    bench_observability.register_kind(kinds)
    bench_e2e.register_kind(kinds)
    bench_suite.register_kind(kinds)


def run_produce(args: argparse.Namespace, settings: Settings) -> int:
    figures = bench_produce.measure(settings, args.count, args.latency_count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(bench_produce.report(figures)) + f"\n  -> {args.out}")
    return 0

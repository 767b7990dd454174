"""``notify bench all`` (``make bench``, ``make bench-quick``): every stage next to its baseline, one file.

Each stage runs as its own ``notify bench KIND`` subprocess (a fresh interpreter: no threads, caches
or tracer left over from the stage before) on the same broker in the same run, and writes its
figures; this harness reads them back, prints one table (figure, baseline, ratio, goal) and writes
everything to ``<out-dir>/<date>-<machine>.json``: the table, each stage's full figures, the
parameters and the machine. ``--quick`` runs the same table with small sizes (under three minutes on
two cores); sizes and durations of any stage can be set with ``--stage-args 'KIND=--count 500'``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notify_cli.bench_table import Row, rows_for, slowest
from notify_core.settings import Settings

# Every stage, in the order it runs, with its sizes for a full and for a quick run.
STAGES: dict[str, tuple[list[str], list[str]]] = {
    "produce": (
        ["--count", "200000", "--latency-count", "1000"],
        ["--count", "30000", "--latency-count", "200"],
    ),
    "api": ([], ["--count", "5000", "--seconds", "4", "--single-seconds", "3"]),
    "router": (["--count", "20000"], ["--count", "4000", "--users", "500"]),
    "delivery": (["--count", "5000"], ["--count", "800"]),
    "sink": (["--events", "1000000"], ["--events", "60000"]),
    "e2e": (
        ["--rates", "200,500,1000", "--seconds", "20", "--catchup", "1000000", "--scale-count", "20000"],
        [
            "--rates",
            "200,500",
            "--seconds",
            "4",
            "--catchup",
            "4000",
            "--scale-count",
            "2000",
            "--users",
            "400",
        ],
    ),
}
STAGE_TIMEOUT_S = 3 * 3600  # a full catch-up of a million requests is the longest


def register_kind(kinds: Any) -> None:
    parser = kinds.add_parser("all", help="every stage next to its baseline; one results file and table")
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole table in minutes")
    parser.add_argument("--only", action="append", choices=list(STAGES), help="run just these stages")
    parser.add_argument("--skip", action="append", choices=list(STAGES), default=[], help="leave a stage out")
    parser.add_argument(
        "--stage-args",
        action="append",
        default=[],
        metavar="KIND=ARGS",
        help="extra options for one stage, e.g. 'router=--count 50000' (later options win)",
    )
    parser.add_argument("--out-dir", type=Path, help="default bench/results (full), bench-results (quick)")
    parser.set_defaults(handler=run)


def machine_name() -> str:
    """A stable name for this kind of machine (NOTIFY_BENCH_MACHINE overrides): arch, CPUs, memory."""
    if os.environ.get("NOTIFY_BENCH_MACHINE"):
        return os.environ["NOTIFY_BENCH_MACHINE"]
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"-{round(pages / 2**30)}g"
    except (ValueError, OSError, AttributeError):
        memory = ""
    return f"{platform.machine()}-{os.cpu_count()}cpu{memory}"


def parse_stage_args(values: list[str]) -> dict[str, list[str]]:
    """``['router=--count 5']`` as ``{'router': ['--count', '5']}``; a bad one is a ``ValueError``."""
    extra: dict[str, list[str]] = {}
    for value in values:
        kind, sep, args = value.partition("=")
        if not sep or kind not in STAGES:
            raise ValueError(
                f"--stage-args {value!r}: expected KIND=ARGS with KIND one of {', '.join(STAGES)}"
            )
        extra.setdefault(kind, []).extend(shlex.split(args))
    return extra


def _run_stage(kind: str, args: list[str], folder: Path) -> tuple[dict[str, Any] | None, str, float]:
    out = folder / f"{kind}.json"
    command = [sys.executable, "-m", "notify_cli", "bench", kind, *args, "--out", str(out)]
    print(f"\n== {kind}: notify bench {kind} {shlex.join(args)}", flush=True)
    started = time.monotonic()
    # Its own process group: on a timeout its sandboxes, router and workers are stopped with it.
    child = subprocess.Popen(command, start_new_session=True)  # its output goes to ours
    try:
        code = child.wait(STAGE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGTERM)  # its finally blocks remove scratch topics and schemas
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        return None, f"timeout after {STAGE_TIMEOUT_S} s", time.monotonic() - started
    took = time.monotonic() - started
    if code != 0 or not out.exists():
        return None, f"exit {code}", took
    figures: dict[str, Any] = json.loads(out.read_text("utf-8"))
    return figures, "ok", took


def _print_table(rows: list[Row]) -> None:
    print(f"\n{'stage':<34} {'figure':>18}  {'baseline (same run)':<34} {'baseline':>14} {'ratio':>6}  goal")
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
        verdict = "" if row.met is None else (" PASS" if row.met else " FAIL")
        print(
            f"{row.stage:<34} {row.figure:>18}  {row.baseline_name:<34} {row.baseline:>14} {ratio:>6}"
            f"  {row.goal}{verdict}".rstrip()
        )


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        extra = parse_stage_args(args.stage_args)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    kinds = [k for k in (args.only or list(STAGES)) if k not in args.skip]
    out_dir = args.out_dir or Path("bench-results" if args.quick else "bench/results")
    started = datetime.now(UTC)
    stages: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-all-") as folder:
        for kind in kinds:
            params = STAGES[kind][1 if args.quick else 0] + extra.get(kind, [])
            figures, status, took = _run_stage(kind, params, Path(folder))
            stages[kind] = {"args": params, "status": status, "seconds": round(took, 1), "figures": figures}
    rows: list[Row] = []
    for kind, stage in stages.items():
        if stage["figures"]:
            try:
                rows += rows_for(kind, stage["figures"])
            except (KeyError, TypeError, ValueError) as exc:  # its figures are kept in the file all the same
                stage["status"] = f"figures unreadable: {type(exc).__name__}: {exc}"
    _print_table(rows)
    low = slowest(rows)
    if low is not None:
        print(f"\nslowest against its baseline: {low.stage} at {low.ratio:.2f} of {low.baseline_name}")
    failed = [kind for kind, stage in stages.items() if stage["status"] != "ok"]
    result = {
        "benchmark": "all",
        "when": started.isoformat(timespec="seconds"),
        "took_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "quick": args.quick,
        "machine": {
            "name": machine_name(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "bootstrap": settings.kafka_bootstrap,
        "table": [row.as_dict() for row in rows],
        "slowest": low.as_dict() if low is not None else None,
        "failed": failed,
        "stages": stages,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{started.date().isoformat()}-{machine_name()}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"figures -> {out} ({result['took_s']:.0f} s)")
    if failed:
        print(f"error: these stages failed: {', '.join(failed)}")
        return 1
    return 0

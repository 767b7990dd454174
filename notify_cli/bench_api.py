"""``notify bench api``: the HTTP API's accepted notifications/s and latency next to the SDK's
``send_batch``, same run, same broker (issue 10).

On throw-away topics and a throw-away database schema (``scratch``) it mints a key that is never
rate limited, serves ``notify api run`` in a subprocess, and drives it from a load generator in
another subprocess (``bench_api_load``): client, server and the SDK baseline never share a GIL.
Phases: the batch endpoint (100 per call, a few connections, closed loop), single ``POST``s in an
open loop at a fixed rate, then the SDK's ``send_batch`` with the same notifications, batch size and
concurrency from this process once the server has stopped. Goals: batch >= 50% of the SDK's rate,
single ``POST`` p99 <= 20 ms at 500 requests/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notify_cli import bench_cpu
from notify_cli.bench_api_load import TOKEN_ENV, notification
from notify_cli.scratch import scratch
from notify_core.settings import Settings
from notify_core.stats import summary_ms

SERVICE = "bench"
GOAL_BATCH_VS_SDK = 0.5
GOAL_SINGLE_P99_MS = 20.0
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
LOAD_MARGIN_S = 120.0  # on top of a phase's own bound: a stuck load generator is killed
# Kafka and PostgreSQL take ~0.1-0.3 cores here; more means something else ran meanwhile, and on a
# small machine latency tails follow it (measured on 2 cores: single p99 ~10 ms idle, 150 ms+ busy).
BUSY_REST_CORES = 0.5


def register_kind(kinds: Any) -> None:
    parser = kinds.add_parser("api", help="HTTP API notifications/s and latency vs the SDK's send_batch")
    parser.add_argument("--count", type=int, default=20_000, help="batch phase: notifications at most")
    parser.add_argument("--seconds", type=float, default=15.0, help="batch phase: seconds at most")
    parser.add_argument("--connections", type=int, default=8, help="batch phase: concurrent calls")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500.0, help="single phase: requests per second")
    parser.add_argument("--single-seconds", type=float, default=10.0, help="single phase: its length")
    parser.add_argument("--out", type=Path, default=Path("bench-results/api.json"))
    parser.set_defaults(handler=run)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


USERS = 10_000  # bench_api_load's notification(i) sends to user-<i mod 10,000>


def _mint_key(settings: Settings, schema: str) -> str:
    """A key, and the users the load generator sends to (the API refuses unknown users)."""
    from api.keys import KeyStore, Scope
    from notify_core.db.connect import make_pool

    pool = make_pool(settings, schema=schema, max_size=1)
    try:
        with pool.connection() as conn:
            conn.execute(
                "insert into users (user_id) select 'user-' || n from generate_series(0, %s) n",
                (USERS - 1,),
            )
        # Never limited: the benchmark measures the API, not its quota.
        return KeyStore(pool).create(SERVICE, [Scope.SEND], rate_per_s=1e9, burst=1_000_000)[1]
    finally:
        pool.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:  # noqa: S310 (our loopback URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@contextmanager
def api_server(env: dict[str, str], log: Path) -> Iterator[Server]:
    """``notify api run`` on a free loopback port, once ``/healthz`` answers."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "notify_cli", "api", "run", "--port", str(port)],
            env={**env, "NOTIFY_API_HOST": "127.0.0.1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"`notify api run` did not come up:\n{tail}")
            time.sleep(0.1)
        yield Server(url, process.pid)
    finally:
        _stop(process)


def load(phase: str, server: Server, token: str, env: dict[str, str], bound_s: float, *options: str) -> Any:
    """One phase of the load generator in its own process: its JSON figures."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "notify_cli.bench_api_load", phase),
            *("--url", server.url, "--server-pid", str(server.pid), *options),
        ],
        env={**env, TOKEN_ENV: token},
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        stdout, _ = process.communicate(timeout=bound_s + LOAD_MARGIN_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    if process.returncode != 0:
        raise RuntimeError(f"load generator ({phase}) exited {process.returncode}")
    return json.loads(stdout)


def sdk_baseline(settings: Settings, count: int, batch_size: int, concurrency: int) -> dict[str, Any]:
    """``send_batch`` of the same notifications, ``concurrency`` calls at a time (the server's threads)."""
    from producer.client import NotificationClient

    def batches(first: int, total: int) -> list[list[dict[str, Any]]]:
        return [
            [{**notification(i), "service": SERVICE} for i in range(k, min(k + batch_size, first + total))]
            for k in range(first, first + total, batch_size)
        ]

    work = batches(0, count)
    latencies: list[float] = []

    with NotificationClient(settings) as client, ThreadPoolExecutor(concurrency) as pool:

        def timed(batch: list[dict[str, Any]]) -> None:
            began = time.perf_counter()
            client.send_batch(batch)
            latencies.append(time.perf_counter() - began)

        list(pool.map(timed, batches(10**9, concurrency * batch_size)))  # warm-up, as the API's
        latencies.clear()
        pids = {"sdk_process": os.getpid()}
        before, started = bench_cpu.snapshot(pids), time.perf_counter()
        list(pool.map(timed, work))
        elapsed = time.perf_counter() - started
        cores = bench_cpu.cores_between(before, bench_cpu.snapshot(pids))
    return {
        "calls": len(work),
        "batch_size": batch_size,
        "concurrency": concurrency,
        "accepted": count,
        "seconds": round(elapsed, 3),
        "notifications_per_s": round(count / elapsed),
        "call_latency": summary_ms(latencies),
        "cpu_cores": cores,
    }


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace, settings: Settings) -> int:
    # SIGTERM's default skips every finally: the server and load generator would outlive us.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _run(args, settings)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from notify_core.db.connect import schema_url

    with scratch(settings) as (bench, schema), tempfile.TemporaryDirectory() as workdir:
        token = _mint_key(bench, schema)
        env = {
            **os.environ,
            "NOTIFY_TOPIC_PREFIX": bench.topic_prefix,
            "NOTIFY_DATABASE_URL": schema_url(bench, schema),
        }
        log = Path(workdir) / "api.log"
        with api_server(env, log) as server:
            batch = load(
                "batch",
                server,
                token,
                env,
                args.seconds,
                *("--count", str(args.count), "--seconds", str(args.seconds)),
                *("--connections", str(args.connections), "--batch-size", str(args.batch_size)),
            )
            single = load(
                "single",
                server,
                token,
                env,
                args.single_seconds,
                *("--rate", str(args.rate), "--seconds", str(args.single_seconds)),
            )
        if not batch["accepted"] or not single["accepted"]:
            print(f"error: the API accepted nothing; its log:\n{log.read_text(errors='replace')[-3000:]}")
            return 1
        sdk = sdk_baseline(bench, batch["accepted"], args.batch_size, args.connections)
    figures = _figures(args, settings, batch, single, sdk)
    figures["topic_prefix"] = bench.topic_prefix  # deleted by now: for whoever checks that it was
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    _print(figures, args.out)
    return 0


def _figures(
    args: argparse.Namespace,
    settings: Settings,
    batch: dict[str, Any],
    single: dict[str, Any],
    sdk: dict[str, Any],
) -> dict[str, Any]:
    ratio = batch["notifications_per_s"] / sdk["notifications_per_s"]
    p99 = single["latency"]["p99_ms"]
    return {
        "benchmark": "api",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "cpus": os.cpu_count(),
        "bootstrap": settings.kafka_bootstrap,
        "bounds": {"count": args.count, "seconds": args.seconds, "single_seconds": args.single_seconds},
        "batch_endpoint": batch,
        "sdk_send_batch": sdk,
        "batch_vs_sdk": round(ratio, 3),
        "single_post": single,
        "goals": {
            "batch_vs_sdk_min": GOAL_BATCH_VS_SDK,
            "batch_met": ratio >= GOAL_BATCH_VS_SDK,
            "single_rate_rps": args.rate,
            "single_p99_max_ms": GOAL_SINGLE_P99_MS,
            "single_met": p99 <= GOAL_SINGLE_P99_MS and not single["errors"],  # a refusal is no pass
        },
    }


def _verdict(met: bool) -> str:
    return "PASS" if met else "FAIL"


def _cores(cpu: dict[str, float] | None) -> str:
    if cpu is None:
        return "cores used: unknown (no /proc)"
    parts = [f"{name} {value:.2f}" for name, value in cpu.items() if name not in ("cpus", "machine")]
    return f"cores used: {', '.join(parts)}; machine {cpu['machine']:.2f} of {cpu['cpus']:g}"


def _print(figures: dict[str, Any], out: Path) -> None:
    batch, sdk = figures["batch_endpoint"], figures["sdk_send_batch"]
    single, goals = figures["single_post"], figures["goals"]
    b_lat, s_lat, one = batch["call_latency"], sdk["call_latency"], single["latency"]
    rows = [
        (
            f"POST :batch ({batch['batch_size']}/call, {batch['connections']} connections)",
            f"{batch['notifications_per_s']:,} notif/s",
            f"per call p50 {b_lat['p50_ms']:.1f}, p99 {b_lat['p99_ms']:.1f} ms",
            "",
            "",
        ),
        (
            f"SDK send_batch ({sdk['batch_size']}/call, {sdk['concurrency']} threads)",
            f"{sdk['notifications_per_s']:,} notif/s",
            f"per call p50 {s_lat['p50_ms']:.1f}, p99 {s_lat['p99_ms']:.1f} ms",
            "",
            "",
        ),
        (
            "batch / SDK",
            f"{figures['batch_vs_sdk']:.2f}",
            "",
            f">= {goals['batch_vs_sdk_min']:.2f}",
            _verdict(goals["batch_met"]),
        ),
        (
            f"single POST, open loop at {single['target_rps']:g}/s",
            f"{single['achieved_rps']:,} req/s",
            f"p50 {one['p50_ms']:.1f}, p99 {one['p99_ms']:.1f}, max {one['max_ms']:.1f} ms",
            f"p99 <= {goals['single_p99_max_ms']:g} ms",
            _verdict(goals["single_met"]),
        ),
    ]
    print(f"API benchmark ({figures['machine']}, {figures['cpus']} CPUs) -> {out}")
    print(f"  {'':<44} {'figure':>16}  {'latency':<36} {'goal':<15} verdict")
    for label, figure, latency, goal, verdict in rows:
        print(f"  {label:<44} {figure:>16}  {latency:<36} {goal:<15} {verdict}".rstrip())
    for name, phase in (("batch", batch), ("SDK", sdk), ("single", single)):
        cpu = phase["cpu_cores"]
        print(f"  {name + ' phase':<13} {_cores(cpu)}")
        if cpu is not None and cpu["rest"] > BUSY_REST_CORES:
            print(
                f"  {'':<13} note: other work took {cpu['rest']:.2f} cores meanwhile; this phase reflects it"
            )
        if phase.get("errors"):
            print(f"  {'':<13} errors: {phase['errors']}")

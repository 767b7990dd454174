"""``notify bench e2e``: request-to-provider latency and throughput of the whole pipeline, as processes.

One router and one worker per channel run as ``notify`` subprocesses (``bench_fleet``), each channel's
sandbox in a process of its own (``sandboxes.process``), on throw-away topics and a database schema.
Every request carries ``t=<send time>`` into its rendered text; the sandbox records its arrival time and
that marker, so latency is sandbox arrival minus the SDK call, across both hops and three processes.

1. latency at fixed offered rates: an open-loop sender here (``send_async`` at the scheduled instants,
   never waiting for an acknowledgement before the next), one channel per request, round robin;
2. the sustainable rate: the highest rate with p99 < 1 s, probing upwards by doubling;
3. catch-up: a backlog published while everything is stopped, then the time to deliver it all;
4. scale-out: a backlog drained by 1, then by 2 routers and 2 workers per channel.
CPU (in cores) of every process and of the machine is recorded for each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from notify_cli.bench_cpu import cores_between, snapshot
from notify_cli.bench_fleet import CHANNELS, UNPACED_SMS_PER_S, Fleet, process_env, seed
from notify_cli.scratch import scratch
from notify_core.db.connect import make_pool
from notify_core.settings import Settings
from notify_core.stats import summary_ms
from notify_core.topics import Channel
from notify_core.userdata.repository import UserDataRepository
from producer.client import NotificationClient
from sandboxes.process import Receipt, SandboxProcess, sandbox_processes, worker_env

Say = Callable[[str], None]
CATEGORY = "account"  # no category row: optional and uncapped, as in ``bench router``
P99_GOAL_S = 1.0
MAX_PROBE_RATE, MAX_PROBES = 4000, 3
MIN_PROBE_RATE = 25  # probing down stops here: below it the pipeline is broken, not slow
WARMUP = 400
CHUNK = 10_000  # requests per send_batch for backlogs


def register_kind(kinds: Any) -> None:
    parser = kinds.add_parser("e2e", help="end-to-end latency, sustainable rate, catch-up and scale-out")
    parser.add_argument("--rates", default="200,500,1000", help="offered requests/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of sending per rate")
    parser.add_argument("--catchup", type=int, default=100_000, help="backlog for the catch-up phase")
    parser.add_argument("--scale-count", type=int, default=20_000, help="backlog per scale-out step")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/e2e.json"))
    parser.set_defaults(handler=run)


# --- pure helpers -----------------------------------------------------------------------------------
def schedule(rate: float, seconds: float) -> list[float]:
    """Open-loop send instants, in seconds from the start: ``rate`` per second, evenly spaced."""
    return [i / rate for i in range(round(rate * seconds))]


def latency_figures(
    receipts: Mapping[Channel, Iterable[Receipt]], since: float, until: float
) -> dict[str, Any]:
    """Latency (arrival minus marker) of receipts whose marker lies in [since, until], all and per channel."""
    per: dict[Channel, list[float]] = {
        c: [r.at - r.marker for r in rs if r.marker is not None and since <= r.marker <= until]
        for c, rs in receipts.items()
    }
    every = [x for xs in per.values() for x in xs]
    return {
        "received": len(every),
        "latency": summary_ms(every) if every else None,
        "p99_ms_per_channel": {c.value: summary_ms(xs)["p99_ms"] if xs else None for c, xs in per.items()},
    }


def drain_figures(
    receipts: Mapping[Channel, Iterable[Receipt]], since: float, began: float
) -> dict[str, Any]:
    """Seconds from ``began`` to the last receipt with a marker >= ``since``, and deliveries/s per channel."""
    ats = {
        c: sorted(r.at for r in rs if r.marker is not None and r.marker >= since)
        for c, rs in receipts.items()
    }
    first = min((xs[0] for xs in ats.values() if xs), default=began)
    last = max((xs[-1] for xs in ats.values() if xs), default=began)
    count = sum(len(xs) for xs in ats.values())
    seconds = last - began
    return {
        "received": count,
        "seconds": round(seconds, 3),
        "first_receipt_s": round(first - began, 3),  # start-up (and, with a restart, the rejoin)
        "requests_per_s": round(count / seconds) if seconds > 0 else None,
        "deliveries_per_s": {
            c.value: round(len(xs) / (xs[-1] - began)) if xs and xs[-1] > began else None
            for c, xs in ats.items()
        },
    }


def probe_rates(passed: list[int], tried: list[int]) -> list[int]:
    """Rates to try next: doubling from the highest tried rate if it passed (at most 3, up to 4000/s);
    halving from the lowest if none passed (at most 3, down to MIN_PROBE_RATE); otherwise evenly
    spaced between the highest pass and the failure above it, downwards (at most 3)."""
    if not tried:
        return []
    if not passed:
        low = min(tried)
        return [r for r in (low // 2**k for k in range(1, MAX_PROBES + 1)) if r >= MIN_PROBE_RATE]
    top, best = max(tried), max(passed)
    if best != top:
        failed = min(r for r in tried if r > best)
        step = (failed - best) / (MAX_PROBES + 1)
        between = [round(failed - step * k) for k in range(1, MAX_PROBES + 1)]
        return sorted({r for r in between if best < r < failed}, reverse=True)
    return [r for r in (top * 2**k for k in range(1, MAX_PROBES + 1)) if r <= MAX_PROBE_RATE]


def probes_downwards(passed: list[int], tried: list[int]) -> bool:
    """Whether ``probe_rates`` goes down (stop at the first pass) rather than up (stop at a failure)."""
    return not passed or max(passed) != max(tried)


def request(i: int, users: int, marker: float) -> dict[str, Any]:
    return {
        "user_id": f"user-{i % users}",
        "template_id": "e2e",
        "service": "bench",
        "category": CATEGORY,
        "channels": [CHANNELS[i % len(CHANNELS)].value],
        "params": {"t": f"{marker:.6f}"},
    }


# --- the run ----------------------------------------------------------------------------------------
class _Run:
    def __init__(self, bench: Settings, boxes: dict[Channel, SandboxProcess], fleet: Fleet, say: Say) -> None:
        self.bench, self.boxes, self.fleet, self.say = bench, boxes, fleet, say
        self.sent = 0  # requests published so far: each is exactly one sandbox receipt
        self.client = NotificationClient(bench)

    def pids(self) -> dict[str, int]:
        boxes = {f"sandbox-{c.value}": b.pid for c, b in self.boxes.items()}
        return {**self.fleet.pids(), **boxes, "bench": os.getpid()}

    def receipts(self) -> dict[Channel, list[Receipt]]:
        return {c: b.receipts() for c, b in self.boxes.items()}

    def wait_delivered(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while sum(b.count() for b in self.boxes.values()) < self.sent:
            if time.monotonic() > deadline:
                return False
            self.fleet.check_alive()
            time.sleep(0.1)
        time.sleep(0.3)  # the sandboxes flush every 0.2 s: the last receipts' lines are complete now
        return True

    def backlog(self, count: int, users: int) -> None:
        for start in range(0, count, CHUNK):
            now = time.time()
            self.client.send_batch([request(i, users, now) for i in range(start, min(count, start + CHUNK))])
        self.sent += count

    async def _offer(self, rate: int, seconds: float, users: int) -> tuple[int, float, float]:
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Future[Any]] = []
        began, wall = loop.time(), time.time()
        for i, at in enumerate(schedule(rate, seconds)):
            delay = began + at - loop.time()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            # The marker is when the request was due, not when a late sender got to it: a sender that
            # falls behind must show as latency (no coordinated omission).
            tasks.append(asyncio.ensure_future(self.client.send_async(request(i, users, wall + at))))
        span = loop.time() - began
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failed = sum(isinstance(r, BaseException) for r in results)
        return len(tasks) - failed, span, (loop.time() - began)

    def offered(self, rate: int, seconds: float, users: int) -> dict[str, Any]:
        before, since = snapshot(self.pids()), time.time()
        ok, span, acked_in = asyncio.run(self._offer(rate, seconds, users))
        until = time.time()
        self.sent += ok
        complete = self.wait_delivered(timeout_s=60 + 2 * seconds)
        cpu = cores_between(before, snapshot(self.pids()))
        figures = latency_figures(self.receipts(), since, until)
        lat = figures["latency"]
        passed = complete and lat is not None and lat["p99_ms"] < P99_GOAL_S * 1000
        self.say(
            f"  {rate:>5}/s offered: sent {ok} at {ok / span if span else 0:.0f}/s,"
            f" received {figures['received']}; p50 {lat and lat['p50_ms']} ms,"
            f" p99 {lat and lat['p99_ms']} ms ({'pass' if passed else 'FAIL'})"
        )
        return {
            "offered_per_s": rate, "sent": ok, "achieved_send_per_s": round(ok / span, 1) if span else None,
            "send_acked_s": round(acked_in, 3), "all_received": complete, **figures,
            "p99_under_1s": passed, "cpu_cores": cpu,
        }  # fmt: skip

    def drain(self, count: int, users: int, size: int, restart: bool) -> dict[str, Any]:
        """Publish ``count`` (with the fleet stopped when ``restart``), then time until all arrive."""
        stopped = self.fleet.stop() if restart else {}
        if not restart:
            self.fleet.scale(size)
            self.fleet.wait_stable(size)
        since = time.time()
        self.backlog(count, users)
        began = time.time()
        if restart:
            self.fleet.scale(size)
        else:
            began = since
        before = snapshot(self.pids())
        complete = self.wait_delivered(timeout_s=120 + count / 100)
        cpu = cores_between(before, snapshot(self.pids()))
        figures = drain_figures(self.receipts(), since, began)
        self.say(
            f"  {count} requests, {size} router(s) + {size} worker(s)/channel: {figures['seconds']} s,"
            f" {figures['requests_per_s']} req/s"
        )
        return {
            "requests": count,
            "processes_per_role": size,
            "all_received": complete,
            **figures,
            "cpu_cores": cpu,
            **({"stop_exit_codes": stopped} if restart else {}),
        }


def measure(
    settings: Settings,
    *,
    rates: list[int],
    seconds: float,
    catchup: int,
    scale_count: int,
    users: int = 2000,
    say: Say = print,
) -> dict[str, Any]:
    started = time.monotonic()
    figures: dict[str, Any] = {"benchmark": "e2e", "when": datetime.now(UTC).isoformat(timespec="seconds")}
    figures.update(
        users=users, seconds_per_rate=seconds, cpus=os.cpu_count(), sms_max_per_second=UNPACED_SMS_PER_S
    )
    with tempfile.TemporaryDirectory(prefix="notify-e2e-") as tmp:
        prefix = f"bench-{os.urandom(4).hex()}"
        updates = {"topic_prefix": prefix, "router_group": f"{prefix}-router", "worker_group_prefix": prefix}
        with (
            scratch(settings, **updates) as (bench, schema),
            sandbox_processes(Path(tmp) / "sandboxes") as boxes,
        ):
            pool = make_pool(bench, schema=schema, min_size=1, max_size=2)
            try:
                seed(UserDataRepository(pool, cache_size=0, cache_ttl_s=0), users)
            finally:
                pool.close()
            say(f"e2e: seeded {users} users; starting 1 router + 1 worker per channel")
            fleet = Fleet(bench, {**process_env(bench, schema), **worker_env(boxes)}, Path(tmp) / "logs")
            e2e = _Run(bench, boxes, fleet, say)
            try:
                fleet.scale(1)
                figures["startup_s"] = round(fleet.wait_stable(1), 2)
                e2e.backlog(WARMUP, users)
                if not e2e.wait_delivered(60):
                    raise RuntimeError("the warm-up requests were not all delivered in 60 s")
                say("latency at offered rates (open loop, one channel per request, round robin)")
                steps = [e2e.offered(r, seconds, users) for r in rates]
                passed = [s["offered_per_s"] for s in steps if s["p99_under_1s"]]
                downward = probes_downwards(passed, rates)  # then it stops at the first rate that passes
                for rate in probe_rates(passed, rates):
                    steps.append(e2e.offered(rate, seconds, users))
                    ok = bool(steps[-1]["p99_under_1s"])
                    if ok:
                        passed.append(rate)
                    if ok == downward:
                        break
                figures["rates"] = steps
                figures["sustainable_rate_p99_under_1s"] = max(passed, default=None)
                say("catch-up: backlog published while router and workers are stopped")
                figures["catchup"] = e2e.drain(catchup, users, 1, restart=True)
                say("scale-out: a backlog drained by 1, then by 2 of each")
                one = e2e.drain(scale_count, users, 1, restart=False)
                two = e2e.drain(scale_count, users, 2, restart=False)
                ratio = (
                    two["requests_per_s"] / one["requests_per_s"]
                    if one["requests_per_s"] and two["requests_per_s"]
                    else None
                )
                figures["scale_out"] = {"one": one, "two": two, "ratio": ratio and round(ratio, 2)}
            finally:
                e2e.client.close()
                figures["exit_codes"] = fleet.stop()
    figures["wall_s"] = round(time.monotonic() - started, 1)
    return figures


def run(args: argparse.Namespace, settings: Settings) -> int:
    rates = [int(r) for r in str(args.rates).split(",") if r.strip()]
    figures = measure(
        settings, rates=rates, seconds=args.seconds, catchup=args.catchup, scale_count=args.scale_count,
        users=args.users,
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"sustainable rate (p99 < 1 s): {figures['sustainable_rate_p99_under_1s']}/s  -> {args.out}")
    return 0

"""The load generator of ``notify bench api``, run as its own process on loopback
(``python -m notify_cli.bench_api_load PHASE ...``) so that it never shares a GIL with the server.

Phases: ``batch`` (closed loop: a few connections, each sending ``POST /v1/notifications:batch``
calls back to back) and ``single`` (open loop: ``POST /v1/notifications`` at scheduled times, each
latency measured from its scheduled time, so a slow answer is not hidden by the next request waiting
for it: no coordinated omission). Bodies are encoded before the clock starts, to keep the client's
own CPU off the figures. The key comes in ``NOTIFY_BENCH_TOKEN``; one JSON object of figures goes
to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp

from notify_cli import bench_cpu
from notify_core.stats import summary_ms

TOKEN_ENV = "NOTIFY_BENCH_TOKEN"  # noqa: S105 (the name of the variable, not a secret)
ACCEPTED = 202
WARMUP_OFFSET = 10**9  # warm-up notifications get indexes of their own, never counted
SINGLE_WARMUP_S = 0.5
REQUEST_TIMEOUT_S = 30.0


def notification(i: int) -> dict[str, Any]:
    """The body of one notification (no ``service``: the API takes it from the key)."""
    return {
        "user_id": f"user-{i % 10_000}",
        "template_id": "order-shipped",
        "category": "transactional",
        "channels": ["ios", "email"],
        "params": {"order_id": f"A{i:08d}", "items": 3, "total": 42.5},
    }


def batch_bodies(first: int, count: int, batch_size: int) -> list[bytes]:
    return [
        json.dumps(
            {"notifications": [notification(i) for i in range(start, min(start + batch_size, first + count))]}
        ).encode()
        for start in range(first, first + count, batch_size)
    ]


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, errors: Counter[str]) -> bool:
    """One call; ``True`` when it was accepted. Anything else is counted in ``errors``."""
    try:
        async with session.post(url, data=body) as response:
            await response.read()  # the whole answer, so the connection is reused
            if response.status == ACCEPTED:
                return True
            errors[str(response.status)] += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        errors[type(exc).__name__] += 1
    return False


async def batch_phase(
    session: aiohttp.ClientSession,
    base: str,
    pids: dict[str, int],
    *,
    count: int,
    seconds: float,
    connections: int,
    batch_size: int,
) -> dict[str, Any]:
    url = f"{base}/v1/notifications:batch"
    errors: Counter[str] = Counter()
    warmup = batch_bodies(WARMUP_OFFSET, connections * batch_size, batch_size)
    # One call per connection first: connections open and the server's first-call costs paid.
    await asyncio.gather(*(_post(session, url, body, Counter()) for body in warmup))
    bodies = batch_bodies(0, count, batch_size)
    sizes = [min(batch_size, count - k * batch_size) for k in range(len(bodies))]
    pending = iter(range(len(bodies)))
    latencies: list[float] = []
    accepted = calls = 0
    cpu_before, started = bench_cpu.snapshot(pids), time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        nonlocal accepted, calls
        for k in pending:  # shared iterator: each call is taken by exactly one connection
            if time.perf_counter() >= deadline:
                return
            began = time.perf_counter()
            ok = await _post(session, url, bodies[k], errors)
            latencies.append(time.perf_counter() - began)
            calls += 1
            accepted += sizes[k] if ok else 0

    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    cpu_cores = bench_cpu.cores_between(cpu_before, bench_cpu.snapshot(pids))
    return {
        "calls": calls,
        "batch_size": batch_size,
        "connections": connections,
        "accepted": accepted,
        "seconds": round(elapsed, 3),
        "notifications_per_s": round(accepted / elapsed) if elapsed > 0 else None,
        "call_latency": summary_ms(latencies) if latencies else None,
        "errors": dict(errors),
        "cpu_cores": cpu_cores,
    }


async def _open_loop(
    session: aiohttp.ClientSession, url: str, rate: float, seconds: float, first: int
) -> tuple[list[float], int, Counter[str], float]:
    """(latencies from the scheduled time, accepted, errors, seconds from the first schedule to the
    last answer) of ``rate * seconds`` requests sent at ``first + i / rate``, never waiting for answers."""
    total = max(1, round(rate * seconds))
    bodies = [json.dumps(notification(first + i)).encode() for i in range(total)]
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    accepted = 0
    done_at = 0.0

    async def one(scheduled: float, body: bytes) -> None:
        nonlocal accepted, done_at
        ok = await _post(session, url, body, errors)
        done_at = time.perf_counter()
        latencies.append(done_at - scheduled)
        accepted += ok

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.01
    for i, body in enumerate(bodies):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, body)))
    await asyncio.gather(*tasks)
    return latencies, accepted, errors, done_at - start


async def single_phase(
    session: aiohttp.ClientSession, base: str, pids: dict[str, int], *, rate: float, seconds: float
) -> dict[str, Any]:
    url = f"{base}/v1/notifications"
    await _open_loop(session, url, rate, SINGLE_WARMUP_S, WARMUP_OFFSET)
    cpu_before = bench_cpu.snapshot(pids)
    latencies, accepted, errors, elapsed = await _open_loop(session, url, rate, seconds, 0)
    cpu_cores = bench_cpu.cores_between(cpu_before, bench_cpu.snapshot(pids))
    return {
        "target_rps": rate,
        "seconds": round(elapsed, 3),
        "sent": len(latencies),
        "accepted": accepted,
        "achieved_rps": round(accepted / elapsed, 1) if elapsed > 0 else None,
        # Every answer, refused ones too, from the time it was due to be sent.
        "latency": summary_ms(latencies),
        "errors": dict(errors),
        "cpu_cores": cpu_cores,
    }


async def run(args: argparse.Namespace, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # No connection cap: an open loop must not queue requests behind a pool limit of its own.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    pids = {"load_generator": os.getpid()}
    if args.server_pid is not None:
        pids["server"] = args.server_pid
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:
        if args.phase == "batch":
            return await batch_phase(
                session,
                args.url,
                pids,
                count=args.count,
                seconds=args.seconds,
                connections=args.connections,
                batch_size=args.batch_size,
            )
        return await single_phase(session, args.url, pids, rate=args.rate, seconds=args.seconds)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m notify_cli.bench_api_load")
    parser.add_argument("phase", choices=["batch", "single"])
    parser.add_argument("--url", required=True, help="the API's base URL")
    parser.add_argument("--server-pid", type=int, help="the server's pid, for the cores it used")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--count", type=int, default=20_000, help="batch: notifications")
    parser.add_argument("--connections", type=int, default=8, help="batch: concurrent connections")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500.0, help="single: requests per second")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        print(f"error: set {TOKEN_ENV}", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(run(args, token))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

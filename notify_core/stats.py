"""Latency percentiles for benchmarks (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence

# How many recent latencies a long-running process keeps for its figures (about 0.8 MB).
LATENCY_SAMPLES = 100_000


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; ``pct`` in [0, 100]. Raises ValueError on an empty sample."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= pct <= 100:
        raise ValueError("pct must be within [0, 100]")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of durations given in seconds, in milliseconds."""
    return {
        f"p{p}_ms" if p != 100 else "max_ms": round(percentile(samples_s, p) * 1000, 3)
        for p in (50, 95, 99, 100)
    }

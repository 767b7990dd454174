"""`notify bench api` end to end with tiny bounds: it exits 0, writes every figure and removes its
topics. No timed assertions: speed is what the benchmark reports, not what a test checks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings

pytestmark = pytest.mark.integration
PHASE_KEYS = {"accepted", "seconds", "cpu_cores"}


def test_bench_api_writes_its_figures_and_cleans_up(stack_settings: Settings, tmp_path: Path) -> None:
    """A tiny `notify bench api` run exits 0, writes every figure to its JSON, and leaves no topic."""
    out = tmp_path / "api.json"
    args = ["--count", "300", "--seconds", "60", "--single-seconds", "1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "notify_cli", "bench", "api", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "batch / SDK" in done.stdout

    figures = json.loads(out.read_text())
    assert {"benchmark", "when", "machine", "cpus", "bootstrap", "batch_vs_sdk", "goals"} <= set(figures)
    batch, sdk, single = figures["batch_endpoint"], figures["sdk_send_batch"], figures["single_post"]
    assert PHASE_KEYS | {"calls", "notifications_per_s", "call_latency", "errors"} <= set(batch)
    assert PHASE_KEYS | {"calls", "notifications_per_s", "call_latency"} <= set(sdk)
    assert PHASE_KEYS | {"sent", "achieved_rps", "latency", "errors"} <= set(single)
    # Bounded by the count (the 60 s bound is far off): every notification sent, in calls of 100.
    assert (batch["accepted"], batch["calls"], batch["errors"]) == (300, 3, {})
    assert (sdk["accepted"], sdk["calls"]) == (300, 3)
    assert (single["sent"], single["accepted"], single["errors"]) == (500, 500, {})
    assert {"p50_ms", "p99_ms", "max_ms"} <= set(single["latency"])
    assert {"batch_met", "single_met"} <= set(figures["goals"])

    # Deleted topics can linger in the metadata for a moment: wait for them to go, without a sleep
    # that decides the outcome.
    admin = make_admin(stack_settings)
    leftover = [f"{figures['topic_prefix']}."]
    deadline = time.monotonic() + 30
    while leftover and time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics
        leftover = [t for t in topics if t.startswith(f"{figures['topic_prefix']}.")]
        if leftover:
            time.sleep(0.5)
    assert leftover == []

"""`notify bench sink` end to end with a tiny backlog: it exits 0, writes every figure to its JSON,
lands every event exactly once in Parquet, and removes its topics. No timed assertions: speed is
what the benchmark reports, not what a test checks."""

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
EVENTS = 3_000
PHASE_KEYS = {"seconds", "events_per_s", "cpu_cores"}
CONSUMER_KEYS = {"events", "events_per_s_after_first_record", "gc_s", "gc_full_collections"}


def test_bench_sink_writes_its_figures_and_cleans_up(stack_settings: Settings, tmp_path: Path) -> None:
    """A 3,000-event `notify bench sink` exits 0; its JSON holds the produce, baseline (a pass before
    and one after the sink), sink and report figures, the ratio and the goal; the Parquet check found
    every event once; no topic of the run is left."""
    out = tmp_path / "sink.json"
    done = subprocess.run(
        [sys.executable, "-m", "notify_cli", "bench", "sink", "--events", str(EVENTS), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sink / baseline" in done.stdout

    figures = json.loads(out.read_text())
    assert {
        "benchmark",
        "when",
        "machine",
        "cpus",
        "versions",
        "bootstrap",
        "events",
        "backlog",
        "produce",
        "raw_consume_decode_baseline",
        "sink",
        "parquet_check",
        "report",
        "sink_vs_baseline",
        "sink_vs_baseline_after_first_record",
        "goals",
        "background_cpu_cores",
        "topic_prefix",
    } <= set(figures)
    assert figures["events"] == EVENTS
    assert PHASE_KEYS | {"build_s"} <= set(figures["produce"])
    baseline = figures["raw_consume_decode_baseline"]
    assert {"events_per_s", "drift", "before_sink", "after_sink"} <= set(baseline)
    for one in (baseline["before_sink"], baseline["after_sink"]):
        assert set(one) >= PHASE_KEYS | CONSUMER_KEYS
        assert one["events"] == EVENTS
    sink = figures["sink"]
    assert PHASE_KEYS | CONSUMER_KEYS | {"rows", "files", "bytes", "flushes"} <= set(sink)
    assert (sink["events"], sink["rows"], sink["dead_letters"]) == (EVENTS, EVENTS, 0)
    assert sink["stopped"] == "backlog consumed"
    assert sink["files"] == sink["sink_stats_files"] > 0
    check = figures["parquet_check"]
    assert (check["rows"], check["distinct_event_ids"], check["ok"]) == (EVENTS, EVENTS, True)
    for by in ("channel", "channel,template"):
        assert {"seconds", "events_read", "groups", "cpu_cores"} <= set(figures["report"][by])
        assert figures["report"][by]["events_read"] == EVENTS
    assert {"sink_vs_baseline_min", "met"} <= set(figures["goals"])

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

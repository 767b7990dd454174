"""The benchmark harness's pure parts: Kafka's tool output, the table, stage options, profile tops."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notify_cli.bench_produce import parse_producer_performance
from notify_cli.bench_suite import STAGES, parse_stage_args
from notify_cli.bench_table import Row, rows_for, slowest
from notify_cli.demo_speed import speed_lines
from notify_cli.profile_top import top
from notify_core.ids import random_uuid

# The last two lines ProducerPerformance 4.1 prints for a run (the first is a progress line).
TOOL_OUTPUT = """\
31057 records sent, 6211.4 records/sec (0.91 MB/sec), 1531.2 ms avg latency, 2460.0 ms max latency.
200000 records sent, 26991.3 records/sec (3.94 MB/sec), 118.40 ms avg latency, 311.00 ms max latency, \
128 ms 50th, 156 ms 95th, 161 ms 99th, 170 ms 99.9th.
"""


def test_the_final_summary_of_producer_performance_is_read_not_a_progress_line() -> None:
    """The figures are the run's totals (the last summary), with its percentiles."""
    figures = parse_producer_performance(TOOL_OUTPUT)
    assert figures["records"] == 200_000
    assert figures["records_per_s"] == 26_991
    assert (figures["p50_ms"], figures["p95_ms"], figures["p99_ms"]) == (128, 156, 161)


def test_output_without_a_summary_is_a_clear_error() -> None:
    """A tool that printed no summary (it failed half-way) is refused, not read as zero."""
    with pytest.raises(ValueError, match="no ProducerPerformance summary"):
        parse_producer_performance("Exception in thread main\n")


def test_stage_args_split_per_stage_and_refuse_unknown_stages() -> None:
    """``KIND=ARGS`` options are split like a shell would, and a typo names the known stages."""
    assert parse_stage_args(["router=--count 50", "router=--users 7", "sink=--events 9"]) == {
        "router": ["--count", "50", "--users", "7"],
        "sink": ["--events", "9"],
    }
    with pytest.raises(ValueError, match="KIND one of"):
        parse_stage_args(["routr=--count 5"])
    with pytest.raises(ValueError, match="expected KIND=ARGS"):
        parse_stage_args(["--count 5"])


def test_every_stage_has_a_table_builder() -> None:
    """A stage added to the harness without a row builder fails here, not after a long run."""
    for kind in STAGES:
        with pytest.raises(KeyError):  # a builder exists: it reads (and misses) the figures' keys
            rows_for(kind, {})


def test_the_slowest_stage_is_the_lowest_throughput_ratio() -> None:
    """Indented detail rows, offered-rate rows and scale-out are not stages to rank."""
    rows = [
        Row("router", "1/s", "pass-through", "2/s", 0.3),
        Row("  same, vs raw producer", "1/s", "raw", "9/s", 0.1),
        Row("HTTP ingest, single", "5/s", "offered rate", "500/s", 0.01),
        Row("sink", "1/s", "decode", "2/s", 0.6),
    ]
    low = slowest(rows)
    assert low is not None
    assert low.stage == "router"
    assert slowest([]) is None


def test_profile_top_counts_self_and_inclusive_time_per_function() -> None:
    """Lines of one function are one row; a frame repeated in a stack counts once inclusively."""
    collapsed = "\n".join(
        [
            "main (a.py:1);work (a.py:5);encode (c.py:9) 6",
            "main (a.py:1);work (a.py:6);encode (c.py:10) 2",
            "main (a.py:1);work (a.py:5);work (a.py:7) 2",
            "idle (b.py:3) 5",
        ]
    )
    total, own, inclusive = top(collapsed, within="work")
    assert total == 10
    assert own[0] == ("encode (c.py)", 8)
    assert dict(inclusive)["work (a.py)"] == 10


@given(st.integers(min_value=1, max_value=600))
def test_random_ids_are_version_4_and_distinct(count: int) -> None:
    """Ids cut from the shared random pool are valid v4 UUIDs and never repeat across refills."""
    ids = [random_uuid() for _ in range(count)]
    assert all(isinstance(i, uuid.UUID) and i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == count


def test_the_demo_shows_the_newest_full_run_and_says_when_there_is_none(tmp_path: Path) -> None:
    """Quick runs are skipped, the newest full run's rows are printed, and no file is a hint, not a crash."""
    assert "run make bench" in speed_lines(tmp_path)[0]
    row = Row("router", "1,000/s", "pass-through", "2,000/s", 0.5, ">= 0.70", False).as_dict()
    for name in ("2026-01-01-m.json", "2026-02-01-m.json", "2026-03-01-m-quick.json"):
        (tmp_path / name).write_text(json.dumps({"table": [{**row, "stage": name}]}))
    lines = speed_lines(tmp_path)
    assert lines[0].startswith("2026-02-01-m.json")
    assert "2026-02-01-m.json" in lines[1]
    assert lines[1].endswith("0.50 FAIL")
    (tmp_path / "2026-04-01-m.json").write_text("{not json")
    assert "cannot be read" in speed_lines(tmp_path)[0]


def _e2e_figures(cpus: int) -> dict[str, object]:
    drain = {"requests": 10, "requests_per_s": 5, "seconds": 2.0}
    return {
        "cpus": cpus,
        "rates": [],
        "sustainable_rate_p99_under_1s": None,
        "catchup": drain,
        "scale_out": {"one": {"requests_per_s": 10}, "two": {"requests_per_s": 9}, "ratio": 0.9},
    }


def test_scale_out_is_judged_only_where_the_cores_allow_it() -> None:
    """On two cores the scale-out row carries no verdict; on eight, 0.9 is a failure."""
    small = rows_for("e2e", _e2e_figures(2))[-1]
    big = rows_for("e2e", _e2e_figures(8))[-1]
    assert small.met is None
    assert "n/a" in small.goal
    assert big.met is False

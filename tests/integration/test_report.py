"""``notify report`` over the known scenario (``tests/report_scenario.py``) written as the sink's
Parquet files, locally and on moto's S3: exact figures, every format, the chart, old files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from notify_cli.main import main
from tests.report_events import V1_SCHEMA, ev, write_events
from tests.report_scenario import BY_CHANNEL, BY_TEMPLATE, PERIOD, WELCOME, router_event, write_scenario


@pytest.fixture
def events_root(tmp_path: Path) -> Path:
    """The scenario under ``tmp_path/analytics``, plus a non-Parquet file outside the window."""
    root = tmp_path / "analytics"
    write_scenario(root)
    return root


def run_report(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["report", *args]) == 0
    return capsys.readouterr().out


def report_json(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        run_report(capsys, "--source", str(root), *PERIOD, "--format", "json", *args)
    )
    return document


def test_every_figure_per_channel_is_exact(events_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """By channel, every count and rate of the scenario is exactly what it should be: a duplicated
    event counts once, a SENT or FAILED_RETRYING produced again under a new event_id counts once
    (per delivery, per attempt), the late open and click count toward their delivery's send, an open of an
    older delivery and a click past the late window do not count, and a file outside the window
    is never read."""
    document = report_json(capsys, events_root, "--by", "channel")
    assert document["groups"] == BY_CHANNEL
    assert (document["from"], document["to"], document["read_until"]) == (
        "2026-03-02",
        "2026-03-03",
        "2026-04-02",
    )


def test_every_figure_per_template_is_exact(events_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """By template, every count, rate and latency percentile of the scenario is exact; a delivery's
    template is its ROUTED event's."""
    assert report_json(capsys, events_root, "--by", "template")["groups"] == BY_TEMPLATE


def test_a_late_open_counts_toward_the_day_of_its_send(
    events_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By day, d2's open and click two days after its send count on the send's day (2026-03-02),
    d6 sent just after midnight counts on the day it was routed, and the days after the period,
    where those late events landed, are no group of their own."""
    groups = {g["day"]: g for g in report_json(capsys, events_root, "--by", "day")["groups"]}
    assert list(groups) == ["2026-03-02", "2026-03-03"]
    first, second = groups["2026-03-02"], groups["2026-03-03"]
    assert (first["routed"], first["sent"], first["opened"], first["clicked"]) == (3, 3, 2, 2)
    assert (first["open_rate"], first["click_rate"]) == (0.6667, 0.6667)
    assert (second["routed"], second["sent"], second["opened"], second["dead_lettered"]) == (3, 1, 0, 2)
    assert (second["p50_request_to_send_ms"], second["delivery_rate"]) == (1100.0, 0.3333)


def test_csv_and_json_carry_the_same_figures(events_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CSV parses back to exactly the JSON's groups (absent values empty, one column per
    suppression reason), for a two-dimension grouping."""
    args = ["--source", str(events_root), *PERIOD, "--by", "channel,template"]
    from_json = json.loads(run_report(capsys, *args, "--format", "json"))["groups"]
    rows = list(csv.DictReader(io.StringIO(run_report(capsys, *args, "--format", "csv"))))
    assert [_parsed(row) for row in rows] == from_json
    assert [(row["channel"], row["template"]) for row in rows] == [
        ("ANDROID", "welcome"),
        ("EMAIL", "receipt"),
        ("EMAIL", "welcome"),
        ("IOS", "welcome"),
        ("SMS", "receipt"),
        ("SMS", "welcome"),
        ("", "receipt"),
        ("", "welcome"),
    ]


def _parsed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"suppressed_by_reason": {}}
    for name, text in row.items():
        if name.startswith("suppressed:"):
            if int(text):
                out["suppressed_by_reason"][name.removeprefix("suppressed:")] = int(text)
        elif name in ("channel", "template"):
            out[name] = text or None
        elif name.endswith(("_rate", "_ms")):
            out[name] = float(text) if text else None
        else:
            out[name] = int(text)
    return {
        **{k: v for k, v in out.items() if k != "suppressed_by_reason"},
        "suppressed_by_reason": out["suppressed_by_reason"],
    }


def test_the_table_shows_each_channel_on_a_line(
    events_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The terminal table has a title naming the period and the late window, a header, and one
    line per group with rates as percentages and the suppression reasons."""
    lines = run_report(capsys, "--source", str(events_root), *PERIOD).splitlines()
    assert lines[0] == "notify report 2026-03-02..2026-03-03 by channel (later events read up to 2026-04-02)"
    assert lines[1].split()[:4] == ["channel", "requested", "routed", "suppressed"]
    counts, rates = ["3", "2", "1", "1", "1", "1", "1", "1", "1"], ["50.00%", "100.00%", "100.00%"]
    assert lines[3].split() == ["EMAIL", *counts, *rates, "1500.0", "1500.0", "no_contact=1"]
    assert lines[6].split()[0] == "(none)"
    assert lines[6].endswith("capped=1 duplicate=1")


def test_plot_writes_a_png(events_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--plot`` writes a PNG chart (its file starts with the PNG signature) and still prints the
    report."""
    chart = tmp_path / "report.png"
    out = run_report(capsys, "--source", str(events_root), *PERIOD, "--plot", str(chart), "--format", "json")
    assert json.loads(out)["groups"] == BY_CHANNEL
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000  # two drawn panels, not an empty canvas


def test_an_old_v1_file_reads_beside_new_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file written before notification_event v2 (no template_id, locale, requested_at columns)
    reads beside v2 files of the same day: its delivery counts, with no template and no latency."""
    root = tmp_path / "mixed"
    old = [
        ev("ROUTED", "2026-03-02T08:00:00.000", "OLD", delivery_id="o1", channel="IOS", service="signup"),
        ev("SENT", "2026-03-02T08:00:00.300", "OLD", delivery_id="o1", channel="IOS"),
        ev("OPENED", "2026-03-03T08:00:00.000", "OLD", delivery_id="o1", channel="IOS"),
    ]
    new = [
        router_event(
            "ROUTED",
            "2026-03-02T09:00:00.100",
            "NEW",
            WELCOME,
            "2026-03-02T09:00",
            delivery_id="n1",
            channel="IOS",
        ),
        ev("SENT", "2026-03-02T09:00:00.250", "NEW", delivery_id="n1", channel="IOS", **WELCOME),
    ]
    write_events(str(root), old, schema=V1_SCHEMA, partition=0)
    write_events(str(root), new, partition=1)
    by_template = report_json(capsys, root, "--by", "template")["groups"]
    assert [(g["template"], g["routed"], g["sent"], g["opened"]) for g in by_template] == [
        ("welcome", 1, 1, 0),
        (None, 1, 1, 1),
    ]
    assert [g["p50_request_to_send_ms"] for g in by_template] == [250.0, None]
    (ios,) = report_json(capsys, root, "--by", "channel")["groups"]
    assert (ios["channel"], ios["requested"], ios["routed"], ios["sent"], ios["open_rate"]) == (
        "IOS",
        2,
        2,
        2,
        0.5,
    )
    assert ios["p95_request_to_send_ms"] == 250.0


def test_a_deferred_delivery_counts_on_its_routing_day_and_its_latency_starts_when_due(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A delivery held for quiet hours (ROUTED at 22:00 UTC with ``deliver_at`` 07:00+01:00 the next
    day, sent 300 ms after that) counts on its routing day, not on the day it was sent, and its
    request-to-send latency is 300 ms from when it was due, not the eight hours it was held."""
    root = tmp_path / "deferred"
    events = [
        router_event(
            "ROUTED",
            "2026-03-02T22:00:00.000",
            "Q1",
            WELCOME,
            "2026-03-02T22:00",
            delivery_id="q1",
            channel="IOS",
            attributes={"deliver_at": "2026-03-03T07:00:00+01:00"},
        ),
        ev("SENT", "2026-03-03T06:00:00.300", "Q1", delivery_id="q1", channel="IOS", **WELCOME),
    ]
    write_events(str(root), events)
    args = ["--from", "2026-03-02", "--to", "2026-03-03", "--by", "day", "--format", "json"]
    groups = json.loads(run_report(capsys, "--source", str(root), *args))["groups"]
    assert [(g["day"], g["routed"], g["sent"]) for g in groups] == [("2026-03-02", 1, 1)]
    assert (groups[0]["p50_request_to_send_ms"], groups[0]["p95_request_to_send_ms"]) == (300.0, 300.0)


def test_a_send_stamped_just_before_the_period_by_a_slow_clock_still_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A delivery routed 100 ms after the period's first midnight whose SENT a worker with a clock
    behind stamped 200 ms earlier (so it lies in the day before the period's partition) is sent:
    the day before ``--from`` is read for later events. The router's decisions of that day are
    not counted."""
    root = tmp_path / "skewed"
    events = [
        router_event(
            "ROUTED",
            "2026-03-01T23:00:00.000",
            "EARLY",
            WELCOME,
            "2026-03-01T23:00",
            delivery_id="e1",
            channel="IOS",
        ),
        ev("SENT", "2026-03-01T23:00:00.200", "EARLY", delivery_id="e1", channel="IOS", **WELCOME),
        router_event(
            "ROUTED",
            "2026-03-02T00:00:00.100",
            "S1",
            WELCOME,
            "2026-03-01T23:59:59.500",
            delivery_id="s1",
            channel="IOS",
        ),
        ev("SENT", "2026-03-01T23:59:59.900", "S1", delivery_id="s1", channel="IOS", **WELCOME),
    ]
    write_events(str(root), events)
    args = ["--from", "2026-03-02", "--to", "2026-03-02", "--late-days", "0", "--format", "json"]
    (ios,) = json.loads(run_report(capsys, "--source", str(root), *args))["groups"]
    assert (ios["channel"], ios["requested"], ios["routed"], ios["sent"]) == ("IOS", 1, 1, 1)
    assert ios["p50_request_to_send_ms"] == 400.0


def test_an_unknown_dimension_is_refused(events_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--by`` takes only the known dimensions: anything else is a usage error (exit 2) that
    lists them, before any file is read."""
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--source", str(events_root), "--by", "channel,user_id; drop table events"])
    assert exit_info.value.code == 2
    assert "choose from channel, template, category, service, locale, day" in capsys.readouterr().err


def test_a_missing_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A local source that does not exist is an error that says so (exit 1), not an empty report."""
    assert main(["report", "--source", str(tmp_path / "nowhere"), *PERIOD]) == 1
    assert "no such directory" in capsys.readouterr().err


def test_an_empty_period_reports_nothing(
    events_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A period with no files at all gives no groups, in every format, and still an (empty) chart."""
    args = ["--source", str(events_root), "--from", "2025-01-01", "--to", "2025-01-02", "--late-days", "0"]
    assert json.loads(run_report(capsys, *args, "--format", "json"))["groups"] == []
    assert run_report(capsys, *args, "--format", "csv").count("\n") == 1
    assert "no events in this period" in run_report(capsys, *args)
    chart = tmp_path / "empty.png"
    run_report(capsys, *args, "--plot", str(chart))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 in server mode on a free loopback port, named by ``NOTIFY_S3_ENDPOINT``."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("NOTIFY_S3_ENDPOINT", endpoint)
    yield endpoint
    server.stop()


def test_the_report_reads_s3(events_root: Path, s3_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The same files uploaded under ``s3://bucket/prefix`` (one PUT each, as the sink writes them,
    no directory markers) give exactly the same per-channel figures, and the object outside the
    window is not read there either."""
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="analytics")
    for path in sorted(events_root.rglob("*.parquet")):
        s3.put_object(
            Bucket="analytics", Key=f"events/{path.relative_to(events_root)}", Body=path.read_bytes()
        )
    args = ["--source", "s3://analytics/events", *PERIOD, "--format", "json"]
    assert json.loads(run_report(capsys, *args))["groups"] == BY_CHANNEL
    empty = ["--source", "s3://analytics/nothing-here", *PERIOD, "--format", "json"]
    assert json.loads(run_report(capsys, *empty))["groups"] == []

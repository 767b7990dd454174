"""End to end on the real stack: the known scenario produced to the analytics topic, written to
Parquet by the sink (``analytics_sink.sink``), and reported exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analytics_sink.sink import Sink
from notify_cli.main import main
from notify_core.codec import CONTENT_TYPE_HEADERS, EVENT, default_codec
from notify_core.kafka_clients import make_producer
from notify_core.settings import Settings
from notify_core.topics import topic_names
from tests.report_scenario import BY_CHANNEL, BY_TEMPLATE, PERIOD, scenario

pytestmark = pytest.mark.integration


def produce_scenario(settings: Settings) -> int:
    """The scenario's events, encoded with the newest schema, keyed by notification id as every
    writer keys them; the replayed copy is produced again, as a replay would. Returns the count."""
    first, replayed = scenario()
    codec = default_codec()
    producer = make_producer(settings)
    topic = topic_names(settings).events
    for item in [*first, *replayed]:
        value = codec.encode(EVENT, item)
        producer.produce(
            topic, value=value, key=item["notification_id"].encode(), headers=CONTENT_TYPE_HEADERS
        )
    assert producer.flush(30) == 0
    return len(first) + len(replayed)


def report(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Path, by: str) -> Any:
    monkeypatch.setenv("NOTIFY_SINK_OUTPUT", str(root))  # the report's default source is the sink's output
    assert main(["report", *PERIOD, "--by", by, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["groups"]


def test_the_sinks_files_report_the_scenario_exactly(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events that went through Kafka and the sink (its layout, its columns, its date partitions)
    give exactly the scenario's figures by channel and by template, the replayed copy counted once."""
    root = tmp_path / "analytics"
    sink_settings = settings.model_copy(update={"sink_output": str(root)})
    produced = produce_scenario(sink_settings)
    stats = Sink(sink_settings).run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120)
    assert stats.rows == produced
    capsys.readouterr()  # the sink's log lines
    assert sorted(p.parent.name for p in root.glob("date=*/*.parquet"))[0] == "date=2026-03-01"
    assert report(monkeypatch, capsys, root, "channel") == BY_CHANNEL
    assert report(monkeypatch, capsys, root, "template") == BY_TEMPLATE

"""The README's runnable example, ``examples/read_events.py``, reads what the pipeline writes.

Events are produced through our own codec (the way the router, the workers and the API write them)
to a test topic on the real broker: v2 events as every writer makes them now, a v1 event as one
already on the topic from before v2, and a record that is not an event at all. The example, run as a
separate process with nothing of this repository imported, finds each writer schema by fingerprint
itself and prints every event as a JSON line in the newest shape (the v1 event with the v2 fields
null), skips the stranger on stderr, and says so in its exit status when fewer events came than
asked for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from notify_core.codec import EVENT, default_codec
from notify_core.events import event
from notify_core.kafka_clients import make_producer
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "read_events.py"
AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def events() -> list[tuple[int | None, dict[str, Any]]]:
    """(version to write, or None for the newest; the event) for a small known scenario."""
    routed = event(
        "ROUTED",
        occurred_at=AT,
        notification_id="n-1",
        user_id="u-1",
        service="shop",
        delivery_id="d-1",
        channel=Channel.EMAIL,
        category="orders",
        template_id="receipt",
        locale="pt-BR",
        requested_at=AT - timedelta(milliseconds=1250),
        attributes={"deliver_at": "2026-06-01T13:00:00+00:00"},
    )
    sent = event(
        "SENT",
        occurred_at=AT + timedelta(seconds=2),
        notification_id="n-1",
        user_id="u-1",
        service="shop",
        delivery_id="d-1",
        channel=Channel.EMAIL,
        category="orders",
        provider="smtp",
        provider_message_id="<d-1@example.com>",
        attempt=1,
        latency_ms=12.5,
        template_id="receipt",
        locale="pt-BR",
    )
    clicked = event(
        "CLICKED",
        occurred_at=AT + timedelta(days=2),
        notification_id="n-1",
        user_id="u-1",
        service="shop",
        delivery_id="d-1",
        channel=Channel.EMAIL,
        category="orders",
        attributes={"url": "https://example.com/order/1"},
    )
    old = event(
        "SUPPRESSED", occurred_at=AT, notification_id="n-2", user_id="u-2", service="shop", reason="capped"
    )
    old = {k: v for k, v in old.items() if k not in ("template_id", "locale", "requested_at")}
    return [(None, routed), (None, sent), (None, clicked), (1, old)]


def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(settings)
    for value in values:
        producer.produce(topic, value=value, key=b"n")  # one key: one partition, in this order
    assert producer.flush(10) == 0


def run_example(
    settings: Settings, topic: str, count: int, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(EXAMPLE), topic, "--bootstrap", settings.kafka_bootstrap]
    command += ["--max", str(count), "--timeout", str(timeout_s)]
    # Run from elsewhere with a bare environment: the example must not need this repository's code.
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s + 60, check=False, cwd="/", env={}
    )


def test_the_example_prints_every_event_in_the_newest_shape(settings: Settings) -> None:
    """Four events (three v2, one v1) and one non-event on the topic: asked for four, the example
    prints exactly the four as JSON lines, in order, with the v1 one's template, locale and request
    time null, timestamps as ISO 8601 UTC; it exits 0 and names the skipped record on stderr."""
    codec = default_codec()
    written = events()
    values = [codec.encode(EVENT, e, version=v) for v, e in written]
    values.insert(2, b"\x00not an event")
    assert values[0][2:10] == codec.fingerprint(EVENT, 2)
    assert values[-1][2:10] == codec.fingerprint(EVENT, 1)
    topic = topic_names(settings).events
    produce(settings, topic, values)

    done = run_example(settings, topic, count=len(written), timeout_s=60)
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    expected = [
        {
            **e,
            "template_id": e.get("template_id"),
            "locale": e.get("locale"),
            "requested_at": e["requested_at"].isoformat() if e.get("requested_at") else None,
            "occurred_at": e["occurred_at"].isoformat(),
        }
        for _, e in written
    ]
    assert printed == expected
    assert printed[0]["requested_at"] == "2026-06-01T11:59:58.750000+00:00"
    assert printed[3]["event_type"] == "SUPPRESSED"
    assert printed[3]["template_id"] is None
    assert "skipped" in done.stderr
    assert "not an Avro single-object record" in done.stderr


def test_the_example_imports_nothing_of_ours() -> None:
    """A data team copies the file alone: it imports only the standard library, fastavro and
    confluent-kafka."""
    source = EXAMPLE.read_text()
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
    }
    stdlib = {"argparse", "collections", "datetime", "io", "json", "pathlib", "re", "sys", "time", "typing"}
    assert imported <= stdlib | {"uuid", "fastavro", "confluent_kafka"}


def test_the_example_says_when_fewer_events_came_than_asked_for(settings: Settings) -> None:
    """Asked for more than the topic holds, it prints what there is and exits 1 at its timeout."""
    codec = default_codec()
    topic = topic_names(settings).events
    produce(settings, topic, [codec.encode(EVENT, e, version=v) for v, e in events()[:2]])
    done = run_example(settings, topic, count=3, timeout_s=8)
    assert done.returncode == 1
    assert [json.loads(line)["event_type"] for line in done.stdout.splitlines()] == ["ROUTED", "SENT"]
    assert "only 2 of 3 events" in done.stderr

"""``notify lag`` on the real stack: a stopped worker's lag, in messages and seconds, equal to Kafka's own
consumer-groups tool, and back to zero when the worker resumes; meanwhile a real Prometheus scrapes the
worker and the lag exporter and raises, then clears, the lag alert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from notify_core.codec import CHANNEL_MESSAGE, default_codec
from notify_core.db.connect import schema_url
from notify_core.kafka_clients import make_producer
from notify_core.metrics_server import free_port, targets_dir
from notify_core.settings import Settings
from notify_core.stack.kafka_tools import describe_groups
from notify_core.topics import Channel, topic_names, worker_group
from sandboxes.messages import channel_message
from tests.pipeline import Process, sandboxes, wait_for_members, worker
from tests.prometheus_harness import running_prometheus

pytestmark = pytest.mark.integration
BACKLOG = 1_000
GROUP_LABEL = "messaging_consumer_group_name"
# The backlog's records are stamped this long ago, so their age is known, and above the 300 s of
# NotifyConsumerLagHigh (monitoring/alerts.yml).
AGED_S = 600.0


def lag(env: dict[str, str], *groups: str, samples: int = 2) -> dict[str, Any]:
    """``notify lag --format json`` run as a user would, decoded."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "notify_cli",
            "lag",
            *groups,
            *("--format", "json", "--samples", str(samples)),
            "--interval",
            "0.5",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def kafka_tool_rows(settings: Settings, group: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(topic, partition) → (current offset, log end offset, lag), as ConsumerGroupCommand prints them."""
    rows = {}
    for line in describe_groups(settings, [group]).splitlines():
        cells = line.split()
        if len(cells) >= 6 and cells[0] == group and cells[3].isdigit():
            rows[(cells[1], int(cells[2]))] = (int(cells[3]), int(cells[4]), int(cells[5]))
    return rows


def produce_aged(settings: Settings, messages: list[dict[str, Any]], stamp_ms: int) -> None:
    codec, producer = default_codec(), make_producer(settings)
    topic = topic_names(settings).channel(Channel.ANDROID)
    for message in messages:
        value = codec.encode(CHANNEL_MESSAGE, message)
        producer.produce(topic, key=message["user_id"].encode(), value=value, timestamp=stamp_ms)
        producer.poll(0)
    assert producer.flush(60) == 0


def until_lag(
    env: dict[str, str], group: str, total: int, process: Process, timeout_s: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.alive(), process.tail()
        groups = lag(env, group, samples=1)["groups"]
        if groups and groups[0]["total_lag"] == total:
            return dict(groups[0])
        time.sleep(0.5)
    raise AssertionError(f"{group} never reached a lag of {total}:\n{process.tail()}")


def test_a_stopped_worker_shows_its_backlog_like_kafkas_tool_then_catches_up(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path
) -> None:
    """A worker consumes, then stops; 1,000 records stamped 600 s ago arrive. ``notify lag`` shows 1,000
    messages of lag, every partition's age ≥ 600 s, status STOPPED, and per partition the same committed
    offset, log end offset and lag as Kafka's ConsumerGroupCommand. A real Prometheus scraping the worker
    and ``notify lag --serve`` has the worker's deliveries and the group's lag, and its lag alert goes
    pending. Resumed, the worker brings the lag back to 0 and the status to OK, and the alert clears."""
    group = worker_group(
        settings.model_copy(update={"worker_group_prefix": settings.topic_prefix}), Channel.ANDROID
    )
    users = [f"lag-{i}" for i in range(12)]  # keyed by user: spread over every partition
    with (
        sandboxes(tmp_path / "sandboxes") as boxes,
        running_prometheus(settings, tmp_path / "prom") as prom,
        ExitStack() as cleanup,
    ):
        env = {
            **boxes.env,
            "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "NOTIFY_DATABASE_URL": schema_url(settings, db_schema[1]),
            "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
            "NOTIFY_WORKER_GROUP_PREFIX": settings.topic_prefix,
            # Every process registers its /metrics where this test's Prometheus looks.
            "NOTIFY_METRICS_TARGETS_DIR": str(targets_dir(prom.settings)),
            "NOTIFY_LAG_WINDOW": "3",
        }
        exporter = Process(
            ["lag", group, "--serve", str(free_port()), "--interval", "1"], env, tmp_path / "lag.log"
        )

        def message(i: int) -> dict[str, Any]:
            user = users[i % len(users)]
            return channel_message(Channel.ANDROID, f"{user}-android", user_id=user)

        cleanup.callback(exporter.stop)
        first = worker(Channel.ANDROID, env, tmp_path / "worker-1.log")
        cleanup.callback(first.stop)  # a failed assertion leaves no process behind
        wait_for_members(settings, group, 1)
        produce_aged(settings, [message(i) for i in range(len(users))], int(time.time() * 1000))
        until_lag(env, group, 0, first)
        on_group = f'{{messaging_consumer_group_name="{group}"}}'
        prom.wait_for('notify_deliveries_total{job="notify-worker-android",notify_outcome="delivered"}')
        prom.wait_for(f"notify_consumer_group_lag{on_group} == 0", timeout_s=60)
        assert first.stop() == 0, first.tail()

        started = time.time()
        produce_aged(settings, [message(i) for i in range(BACKLOG)], int((started - AGED_S) * 1000))
        # A worker is a static member (KIP-345): the group keeps it until its session lapses, so the
        # status is STALLED (a member, offsets still) until then, and STOPPED once nobody is left.
        seen, shown = [], lag(env, group)["groups"][0]
        deadline = time.monotonic() + 3 * settings.consumer_session_timeout_ms / 1000
        while shown["status"] != "STOPPED" and time.monotonic() < deadline:
            seen.append(shown["status"])
            shown = lag(env, group)["groups"][0]
        assert set(seen) <= {"STALLED"}, seen
        assert (shown["status"], shown["members"], shown["total_lag"]) == ("STOPPED", 0, BACKLOG)
        assert AGED_S <= shown["max_lag_seconds"] <= AGED_S + (time.time() - started) + 1
        ours = {(p["topic"], p["partition"]): p for p in shown["partitions"]}
        theirs = kafka_tool_rows(settings, group)
        assert len(theirs) == settings.topic_partitions
        for key, (current, log_end, behind) in theirs.items():
            assert (ours[key]["committed_offset"], ours[key]["log_end_offset"], ours[key]["lag"]) == (
                current,
                log_end,
                behind,
            )
            if behind:
                assert ours[key]["lag_seconds"] >= AGED_S
        assert sum(row[2] for row in theirs.values()) == BACKLOG
        prom.wait_for(f"notify_consumer_group_lag{on_group} == {BACKLOG}")
        alert = prom.wait_for_alert("NotifyConsumerLagHigh", "pending", labels={GROUP_LABEL: group})
        assert float(alert["value"]) >= AGED_S

        second = worker(Channel.ANDROID, env, tmp_path / "worker-2.log")
        cleanup.callback(second.stop)
        caught_up = until_lag(env, group, 0, second)
        assert caught_up["members"] == 1
        assert lag(env, group)["groups"][0]["status"] == "OK"
        prom.wait_for(f"notify_consumer_group_status{on_group} == 0")
        prom.wait_for("ALERTS", lambda r: not [a for a in r if a["metric"].get(GROUP_LABEL) == group])
        assert second.stop() == 0, second.tail()
        assert exporter.stop() == 0, exporter.tail()
    assert sum(boxes.delivered().values()) == len(users) + BACKLOG

"""The real stack answers, topics are applied idempotently, and drift is reported and fixed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.topic_admin import apply_topics, describe_topics, observe
from notify_core.topics import topic_names, topic_specs

pytestmark = pytest.mark.integration


def test_postgres_answers(stack_settings: Settings) -> None:
    with psycopg.connect(stack_settings.database_url.get_secret_value(), connect_timeout=10) as conn:
        row = conn.execute("select current_user, version()").fetchone()
    assert row is not None
    assert "PostgreSQL" in row[1]


def test_apply_creates_every_topic_with_its_config_and_is_idempotent(settings: Settings) -> None:
    admin = make_admin(settings)
    specs = topic_specs(settings)
    observed = observe(admin, [s.name for s in specs])
    assert set(observed) == set(topic_names(settings).all())
    dlq = observed[topic_names(settings).requests_dlq]
    assert dlq.partitions == 3
    assert dlq.config["retention.ms"] == str(settings.dlq_retention_ms)
    assert apply_topics(admin, specs) == [f"all {len(specs)} topics match the config"]


def test_describe_reports_drift_and_apply_fixes_it(settings: Settings) -> None:
    admin = make_admin(settings)
    events = topic_names(settings).events
    change = ConfigResource(
        ConfigResource.Type.TOPIC,
        events,
        incremental_configs=[
            ConfigEntry("retention.ms", "1234", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in admin.incremental_alter_configs([change]).values():
        future.result()

    # A config change reaches the broker through the metadata log: allow it a moment to land.
    deadline = time.monotonic() + 15
    while True:
        [row] = [
            line for line in describe_topics(admin, topic_specs(settings)) if line.startswith(events + " ")
        ]
        if "DRIFT" in row or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "DRIFT: retention.ms 1234" in row

    assert apply_topics(admin, topic_specs(settings)) == [
        f"set retention.ms={settings.events_retention_ms} on {events}"
    ]
    deadline = time.monotonic() + 15
    while any("DRIFT" in line for line in describe_topics(admin, topic_specs(settings))):
        assert time.monotonic() < deadline, "apply did not fix the drift"
        time.sleep(0.2)


def run_cli(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFY_TOPIC_PARTITIONS": str(settings.topic_partitions),
    }
    return subprocess.run(
        [sys.executable, "-m", "notify_cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_describe_lists_every_topic(settings: Settings) -> None:
    done = run_cli(settings, "topics", "describe")
    assert done.returncode == 0, done.stderr
    for name in topic_names(settings).all():
        assert name in done.stdout


def test_cli_send_then_read(settings: Settings) -> None:
    sent = run_cli(
        settings,
        "send",
        "--user",
        "u-9",
        "--template",
        "welcome",
        "--service",
        "cli",
        "--category",
        "account",
        "--param",
        "name=Ada",
    )
    assert sent.returncode == 0, sent.stderr
    read = run_cli(settings, "read", "requests", "--max", "1")
    assert read.returncode == 0, read.stderr
    assert '"user_id": "u-9"' in read.stdout
    assert '"name": "Ada"' in read.stdout


def test_cli_bad_request_exits_2_naming_the_field(settings: Settings) -> None:
    done = run_cli(settings, "send", "--json", '{"user_id": "u", "template_id": "t", "service": "s"}')
    assert done.returncode == 2
    assert "category" in done.stderr
    garbage = run_cli(settings, "send", "--json", "-", stdin="{not json")
    assert garbage.returncode == 2
    assert "error:" in garbage.stderr

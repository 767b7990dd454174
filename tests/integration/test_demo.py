"""`make demo` is one of the two commands a newcomer runs: it must keep working end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from notify_core.db.connect import schema_url
from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.topics import topic_specs

pytestmark = pytest.mark.integration


@pytest.fixture
def demo_settings(stack_settings: Settings) -> Iterator[Settings]:
    """A topic prefix of its own; the demo creates the topics itself, and they are deleted after."""
    own = stack_settings.model_copy(update={"topic_prefix": f"t-{uuid.uuid4().hex[:10]}"})
    yield own
    admin = make_admin(own)
    for future in admin.delete_topics([s.name for s in topic_specs(own)], operation_timeout=30).values():
        future.exception()  # a topic the demo never got to create is not an error here


def test_the_demo_runs_the_whole_pipeline_and_says_what_happened(
    demo_settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "NOTIFY_SINK_OUTPUT": str(tmp_path / "analytics"),
        # Consumer groups of its own too: the router's default group and instance id are also its
        # transactional id, which another run's router on the defaults would fence.
        "NOTIFY_ROUTER_GROUP": f"{demo_settings.topic_prefix}-router",
        "NOTIFY_WORKER_GROUP_PREFIX": demo_settings.topic_prefix,
        "NOTIFY_SINK_GROUP": f"{demo_settings.topic_prefix}-sink",
        "NOTIFY_KAFKA_BOOTSTRAP": demo_settings.kafka_bootstrap,
        "NOTIFY_TOPIC_PREFIX": demo_settings.topic_prefix,
        "NOTIFY_DATABASE_URL": schema_url(demo_settings, db_schema[1]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "notify_cli", "demo"], env=env, capture_output=True, text=True, timeout=300
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    # The demo checks its own outcome (exit 1 otherwise); these are what a reader looks for.
    assert "a bad request is refused before it reaches Kafka" in out
    assert "suppressed 1 x sms: opted_out" in out
    assert "dead letter: missing_param" in out
    assert "user_id: contains a control character U+0000" in out
    assert "dead letter: decode_error" in out
    assert "the workers: {'sent': 7, 'dead_lettered': 1}" in out
    assert "sent after 2 attempts (last error: Throttling" in out
    assert "one-click unsubscribe (RFC 8058) -> 200" in out
    assert "the same offer again: {'email': 'opted_out', 'android': 'routed'}" in out
    assert "event CLICKED" in out
    assert "the sink wrote" in out
    assert "the chart:" in out
    chart = Path(out.split("the chart: ", 1)[1].split()[0])
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sre = out.split("== 10. SRE view", 1)[1].split("== summary", 1)[0]
    groups = [line.split() for line in sre.splitlines() if " waiting " in line and " msgs, " in line]
    assert groups, sre
    assert all(cells[2] == "0" and "OK" in cells for cells in groups), sre  # every group drained
    assert "Prometheus: http://127.0.0.1:" in sre

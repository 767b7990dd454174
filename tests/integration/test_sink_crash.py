"""The sink SIGKILLed while writing, then restarted: counted by event id, no duplicate, no gap.

A backlog of 20,000 events over eight dates and a small flush size make the sink write many files,
each flush one per date it reaches. The first ``notify sink run`` is killed as soon as a file of
the second date appears, so a flush is under way or done but not committed; a second run (burst,
with a smaller flush size, so it cuts the ranges differently) recovers the partitions from their
manifests and finishes. Locally and on moto's S3 (a server in this process,
which the subprocesses reach through NOTIFY_S3_ENDPOINT).
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from notify_core.settings import Settings
from tests.pipeline import Process
from tests.sink_harness import START, committed, local_files, moto_s3, produce, rows, spread_events

pytestmark = pytest.mark.integration

EVENTS = 20_000
DAYS = 8
FLUSH_ROWS = 1_500
REPLAY_FLUSH_ROWS = 700


def crash_and_restart(
    settings: Settings,
    tmp_path: Path,
    env: dict[str, str],
    *,
    written: Callable[[str], bool],
    files: Callable[[], dict[str, bytes]],
) -> dict[str, int]:
    """Kill a sink as soon as ``written`` sees a file of the second date, restart it in burst mode
    with another flush size, check every event landed once; returns what the second run reported."""
    group = f"sink-{uuid.uuid4().hex[:8]}"
    env = {
        "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFY_SINK_GROUP": group,
        # The killed consumer's partitions move once its session lapses: the shortest allowed.
        "NOTIFY_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        **env,
    }
    # In date blocks: a partition's first flush (1,500 of its ~833 events a day) reaches the second
    # date, the replay's first (700) does not, so a file of the crashed flush would outlive the
    # replay unless recovery deletes it.
    events = spread_events(EVENTS, days=DAYS, in_blocks=True)
    second_date = f"date={(START + timedelta(days=1)).date().isoformat()}"
    produce(settings, events)

    first = Process(
        ["sink", "run"], {**env, "NOTIFY_SINK_FLUSH_ROWS": str(FLUSH_ROWS)}, tmp_path / "first.log"
    )
    try:
        deadline = time.monotonic() + 60
        while not written(second_date):
            assert first.alive(), first.tail()
            assert time.monotonic() < deadline, "the sink wrote nothing"
            time.sleep(0.02)  # short: the kill must come while that flush may still be uncommitted
    finally:
        first.popen.send_signal(signal.SIGKILL)
        first.popen.wait(30)
    at_kill = committed(settings, group)
    assert at_kill < EVENTS, "killed too late to prove anything"

    # Cut differently, as after a change of NOTIFY_SINK_FLUSH_ROWS (an age flush does the same).
    replay = {**env, "NOTIFY_SINK_FLUSH_ROWS": str(REPLAY_FLUSH_ROWS)}
    second = Process(["sink", "run", "--burst", "--idle", "3"], replay, tmp_path / "second.log")
    assert second.popen.wait(120) == 0, second.tail()
    report: dict[str, int] = json.loads(second.tail().strip().splitlines()[-1])

    counts = Counter(row["event_id"] for row in rows(files()))
    assert [e for e, n in counts.items() if n > 1] == [], "duplicated rows"
    assert set(counts) == {e["event_id"] for e in events}, "missing rows"
    assert committed(settings, group) == EVENTS
    assert report["rows"] + at_kill >= EVENTS
    return report


def test_sink_killed_while_writing_locally_leaves_no_duplicate_and_no_gap(
    settings: Settings, tmp_path: Path
) -> None:
    """Local directory: after SIGKILL and a restart, each of the 20,000 events is there exactly once."""
    out = tmp_path / "out"
    started = time.monotonic()
    report = crash_and_restart(
        settings,
        tmp_path,
        {"NOTIFY_SINK_OUTPUT": str(out)},
        written=lambda day: any(True for _ in out.glob(f"{day}/*.parquet")),
        files=lambda: local_files(out),
    )
    print(f"local crash test: {time.monotonic() - started:.1f}s, second run {report}")
    assert time.monotonic() - started < 90


def test_sink_killed_while_writing_to_s3_leaves_no_duplicate_and_no_gap(
    settings: Settings, tmp_path: Path
) -> None:
    """moto's S3: the same, with every object a PUT to s3://bucket/prefix."""
    with moto_s3() as s3:
        bucket = s3.bucket()
        env = {"NOTIFY_SINK_OUTPUT": f"s3://{bucket}/events", **s3.env()}
        started = time.monotonic()
        report = crash_and_restart(
            settings,
            tmp_path,
            env,
            written=lambda day: (
                s3.client.list_objects_v2(Bucket=bucket, Prefix=f"events/{day}/").get("KeyCount", 0) > 0
            ),
            files=lambda: s3.files(bucket, "events"),
        )
        print(f"S3 crash test: {time.monotonic() - started:.1f}s, second run {report}")
        assert time.monotonic() - started < 90

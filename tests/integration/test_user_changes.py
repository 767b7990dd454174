"""A preference change reaches every running router within a second, not at the end of its cache TTL.

The routers run as ``notify router run`` subprocesses with the default 60 s user cache. Each user is
sent one request (so the router that owns the user's partition has cached the context), is then
opted out of the category on e-mail in PostgreSQL, and the change is published with
``ChangePublisher``; one second later a second request must be suppressed as ``opted_out``. A
control user is opted out in PostgreSQL without a change record: its second request is still routed
from the cache, which proves the cache was warm and that the record, not a cache miss, did it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from notify_core.codec import CONTENT_TYPE_HEADERS, EVENT, default_codec
from notify_core.db.connect import make_pool, schema_url
from notify_core.kafka_clients import make_admin, make_producer
from notify_core.records import end_offsets, read_records
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from notify_core.userdata.changes import ChangeListener, ChangePublisher, publish_sync
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient
from tests.integration.test_two_of_everything import stats_of
from tests.pipeline import Process, seed, wait_for_members

pytestmark = pytest.mark.integration
CATEGORY = "account"


def request(user_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "template_id": "hello",
        "service": "tests",
        "category": CATEGORY,
        "channels": [Channel.EMAIL.value],
        "params": {"name": user_id},
    }


def outcomes(
    settings: Settings, ids: set[str], since: dict[int, int], timeout_s: float = 30
) -> dict[str, list[tuple[str, str | None]]]:
    """(event_type, reason) of the router's ROUTED/SUPPRESSED events for each of ``ids``."""
    found: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    deadline = time.monotonic() + timeout_s
    while set(found) < ids:
        assert time.monotonic() < deadline, f"no routing decision for {sorted(ids - set(found))}"
        for record in read_records(
            settings, topic_names(settings).events, max_records=10_000, timeout_s=10, idle_s=0.5, since=since
        ):
            event = default_codec().decode(record.value or b"", EVENT)
            if event["notification_id"] in ids and event["event_type"] in ("ROUTED", "SUPPRESSED"):
                found[event["notification_id"]].append((event["event_type"], event["reason"]))
            since[record.partition] = max(since.get(record.partition, 0), record.offset + 1)
    return found


def send(settings: Settings, users: list[str]) -> dict[str, str]:
    """One request per user; user -> notification id."""
    with NotificationClient(settings) as client:
        results = client.send_batch([request(u) for u in users])
    return {u: r.notification_id for u, r in zip(users, results, strict=True)}


def applied_lags(process: Process) -> dict[str, int]:
    """user -> publish-to-invalidation milliseconds, from the router's ``user_change_applied`` lines."""
    lags = {}
    for line in process.log.read_text(errors="replace").splitlines():
        if '"user_change_applied"' in line:
            entry = json.loads(line)
            lags[entry["user_id"]] = entry["lag_ms"]
    return lags


async def publish(settings: Settings, users: list[str], warm_up: str) -> float:
    """Publish a change per user; seconds until the broker acknowledged them all."""
    publisher = ChangePublisher(settings)
    try:
        # First a change for nobody: the producer connects, so what is timed is what a running API sees.
        await publisher.publish(warm_up, ["user"])
        began = time.monotonic()
        await asyncio.gather(*(publisher.publish(u, ["preferences"]) for u in users))
        return time.monotonic() - began
    finally:
        publisher.close()


@pytest.mark.parametrize("routers", [1, 2])
def test_an_opt_out_stops_the_next_request_on_every_router_within_a_second(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path, routers: int
) -> None:
    """After the change record, every router suppresses the user's next request as opted_out,
    although the context it cached a moment before had 60 s left; without the record it would not."""
    schema = db_schema[1]
    group = f"{settings.topic_prefix}-router"
    users = [f"{settings.topic_prefix}-u{i:02d}" for i in range(9)]
    control = f"{settings.topic_prefix}-control"
    warm_up = f"{settings.topic_prefix}-nobody"
    pool = make_pool(settings, schema=schema, max_size=2)
    repo = UserDataRepository(pool)
    seed(repo, [*users, control])
    env = {
        "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NOTIFY_DATABASE_URL": schema_url(settings, schema),
        "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFY_ROUTER_GROUP": group,
        "NOTIFY_USER_CACHE_TTL_S": "60",
    }
    processes = [
        Process(
            ["--log-level", "info", "router", "run"],
            {**env, "NOTIFY_ROUTER_INSTANCE_ID": f"changes-{n}"},
            tmp_path / f"router-{n}.log",
        )
        for n in range(1, routers + 1)
    ]
    try:
        wait_for_members(settings, group, routers, timeout_s=45)
        since = end_offsets(settings, topic_names(settings).events)
        first = send(settings, [*users, control])
        assert all(
            kind == "ROUTED"
            for got in outcomes(settings, set(first.values()), since).values()
            for kind, _ in got
        )

        for user in [*users, control]:
            repo.set_preference(user, CATEGORY, Channel.EMAIL, opted_in=False)
        took_s = asyncio.run(publish(settings, users, warm_up))  # not for the control user
        time.sleep(1.0)

        second = send(settings, [*users, control])
        decided = outcomes(settings, set(second.values()), since)
        for process in processes:
            assert process.alive(), process.tail()
    finally:
        codes = [p.stop() for p in processes]
        pool.close()

    assert codes == [0] * routers, [p.tail() for p in processes]
    assert {u: decided[second[u]] for u in users} == {u: [("SUPPRESSED", "opted_out")] for u in users}
    assert decided[second[control]] == [("ROUTED", None)], "the control user's context was not cached"
    lags = [applied_lags(p) for p in processes]
    for seen in lags:
        assert set(seen) == {*users, warm_up}, "every router hears of every change"
    if routers == 2:
        assert all(stats_of(p)["records"] > 0 for p in processes), "one router routed nothing"
    worst = max(lag for seen in lags for user, lag in seen.items() if user != warm_up)
    print(
        f"\n{routers} router(s): {len(users)} changes acknowledged in {took_s * 1000:.0f} ms,"
        f" applied by every router at most {worst} ms after publishing"
    )


def test_the_listener_starts_at_the_end_and_skips_what_does_not_decode(settings: Settings) -> None:
    """A change made before ``start()`` is not replayed; after it, a garbage record is logged and
    skipped, and the next change still arrives; ``stop()`` ends the thread; nothing is committed."""
    seen: list[str] = []
    publish_sync(settings, "before", ["user"])
    listener = ChangeListener(settings, on_change=seen.append)
    listener.start()
    producer = make_producer(settings)
    producer.produce(
        topic_names(settings).user_changes, value=b"garbage", key=b"x", headers=CONTENT_TYPE_HEADERS
    )
    producer.flush(10)
    publish_sync(settings, "after", ["contacts", "devices"])
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    listener.stop()
    assert seen == ["after"]
    assert (listener.applied, listener.skipped) == (1, 1)
    assert not any(t.name == "notify-user-changes" for t in threading.enumerate())
    groups = make_admin(settings).list_consumer_groups().result().valid
    assert [g.group_id for g in groups if g.group_id.startswith("notify-user-changes-")] == []

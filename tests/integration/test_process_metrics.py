"""The router and the channel workers, as real processes, export what they did at /metrics.

One router and five workers (two for iOS, one for each other channel) start from the CLI with their
default identities and metrics on port 0, registering file_sd targets in a folder of the test's own
(``NOTIFY_METRICS_TARGETS_DIR``). Nine requests go in: eight to seeded users on all four channels,
one to an unknown user. Found through the target files and scraped over HTTP: each channel's
deliveries by provider, the two histograms, the workers' consumed and produced records, and the
router's consumed, produced and decided requests; no user id, token, number or address in any
scrape. The two iOS workers registered distinct ports and instances, and every file is gone once
the processes stop; the sink, run in process on the events they wrote, counts rows and files. The
HTTP API, which serves /metrics on its own port, registers that port.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from analytics_sink.sink import Sink
from api.keys import KeyStore, Scope
from notify_core.db.connect import make_pool, schema_url
from notify_core.instruments import Instruments
from notify_core.metrics import Metrics
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient
from tests import metrics_scrape
from tests.api_harness import schema_settings
from tests.metrics_scrape import Sample, Target, duplicate_series, total
from tests.pipeline import Process, router, sandboxes, seed, targets, wait_for_members, worker

pytestmark = pytest.mark.integration
USERS = [f"pm-{i}" for i in range(8)]
PROVIDERS = {Channel.IOS: "apns", Channel.ANDROID: "fcm", Channel.SMS: "sns", Channel.EMAIL: "smtp"}
JOBS = {"notify-router": 1} | {f"notify-worker-{c.value}": 2 if c is Channel.IOS else 1 for c in Channel}


def registered(folder: Path, processes: list[Process], timeout_s: float = 60) -> list[Target]:
    """Every process's target, once each has written its file."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = metrics_scrape.targets(folder)
        jobs = {job: sum(t.job == job for t in found) for job in JOBS}
        if jobs == JOBS:
            return found
        for process in processes:
            assert process.alive(), process.tail()
        assert time.monotonic() < deadline, f"registered so far: {jobs}"
        time.sleep(0.2)


def scraped(found: list[Target], job: str) -> list[Sample]:
    """The samples of every target of ``job``, together (two iOS workers share out the channel);
    none exposes a series twice (Prometheus would refuse the scrape)."""
    together = []
    for target in found:
        if target.job == job:
            mine = target.scrape()
            assert duplicate_series(mine) == [], target
            together += mine
    return together


def test_router_and_workers_export_their_counts_and_histograms(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the sandboxes received is what the processes' /metrics say, per channel and provider."""
    monkeypatch.delenv("NOTIFY_WORKER_INSTANCE_ID", raising=False)  # two iOS workers: a slot each
    monkeypatch.delenv("NOTIFY_ROUTER_INSTANCE_ID", raising=False)
    schema = db_schema[1]
    pool = make_pool(settings, schema=schema, max_size=2)
    seed(UserDataRepository(pool), USERS)
    pool.close()
    folder = tmp_path / "targets"
    with sandboxes(tmp_path / "sandboxes") as boxes:
        env = {
            **boxes.env,
            "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "NOTIFY_DATABASE_URL": schema_url(settings, schema),
            "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
            "NOTIFY_ROUTER_GROUP": f"{settings.topic_prefix}-router",
            "NOTIFY_WORKER_GROUP_PREFIX": settings.topic_prefix,
            "NOTIFY_METRICS_ENABLED": "true",
            "NOTIFY_METRICS_PORT": "0",
            "NOTIFY_METRICS_TARGETS_DIR": str(folder),
        }
        logs = tmp_path / "logs"
        logs.mkdir()
        processes = [router(env, logs / "router.log")]
        processes += [worker(Channel.IOS, env, logs / f"ios-{n}.log") for n in (1, 2)]
        processes += [worker(c, env, logs / f"{c.value}.log") for c in Channel if c is not Channel.IOS]
        try:
            found = registered(folder, processes)
            ios = [t for t in found if t.job == "notify-worker-ios"]
            # Two of a channel on one host: a free port each, an instance (slot) each, both scraped.
            assert len({t.address for t in ios}) == 2
            assert len({t.instance for t in ios}) == 2
            assert len({t.address for t in found}) == len(found)
            assert {t.path for t in found} == {"/metrics"}
            # Every group settled before traffic: a late join's rebalance would redeliver (skipped).
            wait_for_members(settings, f"{settings.topic_prefix}-router", 1)
            for channel in Channel:
                wait_for_members(
                    settings,
                    f"{settings.topic_prefix}-{channel.value}",
                    JOBS[f"notify-worker-{channel.value}"],
                )

            requests = [
                {"user_id": u, "template_id": "hello", "service": "tests", "category": "account"}
                for u in [*USERS, "pm-nobody"]
            ]
            with NotificationClient(settings) as client:
                client.send_batch([{**r, "params": {"name": r["user_id"]}} for r in requests])

            per_job = wait_for_deliveries(found, processes, len(USERS))
            check_workers(per_job, len(USERS))
            check_router(per_job["notify-router"], len(USERS))
            check_impersonal(found)
        finally:
            codes = {p.log.name: p.stop() for p in processes}
    assert codes == dict.fromkeys(codes, 0), codes
    assert metrics_scrape.targets(folder) == [], "a process left its target file behind"
    check_sink(settings, tmp_path / "analytics", events=4 * len(USERS) + 1 + 4 * len(USERS))


def check_sink(settings: Settings, output: Path, events: int) -> None:
    """The sink, in process on the same events (ROUTED, SUPPRESSED, SENT), counts what it wrote."""
    own = settings.model_copy(
        update={"sink_group": f"{settings.topic_prefix}-sink", "sink_output": str(output)}
    )
    metrics = Metrics("notify-sink")
    stats = Sink(own, instruments=Instruments(metrics)).run(
        stop_when_idle=True, idle_s=2.0, max_runtime_s=120
    )
    found = metrics_scrape.samples(metrics.render().decode())
    consumed = {"notify_process": "sink", "messaging_destination_name": "events"}
    assert stats.records == events
    assert total(found, "notify_messages_consumed_total", **consumed) == events
    assert total(found, "notify_sink_rows_total") == stats.rows == events
    assert total(found, "notify_sink_files_total") == stats.files > 0
    assert total(found, "notify_dead_letters_total") == 0


def wait_for_deliveries(
    found: list[Target], processes: list[Process], expected: int, timeout_s: float = 120
) -> dict[str, list[Sample]]:
    """Scrapes until every channel's workers report ``expected`` delivered (they flush once a second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        per_job = {job: scraped(found, job) for job in JOBS}
        delivered = {
            c: total(
                per_job[f"notify-worker-{c.value}"], "notify_deliveries_total", notify_outcome="delivered"
            )
            for c in Channel
        }
        if all(n >= expected for n in delivered.values()):
            return per_job
        for process in processes:
            assert process.alive(), process.tail()
        assert time.monotonic() < deadline, f"delivered so far: {delivered}"
        time.sleep(0.5)


def check_workers(per_job: dict[str, list[Sample]], expected: int) -> None:
    for channel, provider in PROVIDERS.items():
        found = per_job[f"notify-worker-{channel.value}"]
        who = {"notify_channel": channel.value, "notify_provider": provider}
        assert total(found, "notify_deliveries_total", notify_outcome="delivered", **who) == expected
        assert total(found, "notify_deliveries_total") == expected, "no other outcome than delivered"
        calls = "notify_provider_call_duration_seconds_count"
        assert total(found, calls, notify_outcome="accepted", **who) == expected
        assert total(found, calls) == expected
        assert total(found, "notify_provider_call_duration_seconds_bucket", le="+Inf", **who) == expected
        assert total(found, "notify_delivery_latency_seconds_count", **who) == expected
        assert total(found, "notify_delivery_latency_seconds_sum", **who) > 0
        in_flight = [s for s in found if s.name == "notify_deliveries_in_flight"]
        assert [s.value for s in in_flight] == [0.0] * len(in_flight)
        assert {s.labels["notify_channel"] for s in in_flight} == {channel.value}
        consumed = {"notify_process": "worker", "messaging_destination_name": channel.value}
        assert total(found, "notify_messages_consumed_total", **consumed) == expected
        produced = {"notify_process": "worker", "messaging_destination_name": "events"}
        assert total(found, "notify_messages_produced_total", **produced) == expected  # one SENT each


def check_router(found: list[Sample], expected: int) -> None:
    router_ = {"notify_process": "router"}
    assert (
        total(found, "notify_messages_consumed_total", messaging_destination_name="requests") == expected + 1
    )
    for channel in Channel:
        topic = {"messaging_destination_name": channel.value, **router_}
        assert total(found, "notify_messages_produced_total", **topic) == expected
    # A ROUTED event per delivery, and one SUPPRESSED for the unknown user.
    events = {"messaging_destination_name": "events", **router_}
    assert total(found, "notify_messages_produced_total", **events) == 4 * expected + 1
    assert total(found, "notify_router_requests_total", notify_outcome="routed") == expected
    suppressed = {"notify_outcome": "suppressed", "notify_reason": "unknown_user"}
    assert total(found, "notify_router_requests_total", **suppressed) == 1
    assert total(found, "notify_router_requests_total") == expected + 1


def check_impersonal(found: list[Target]) -> None:
    """No user id, token, number or address reaches a label: the text of every scrape is searched."""
    texts = [metrics_scrape.scrape(t.address, t.path) for t in found]
    personal = [*USERS, "pm-nobody"] + [address for u in USERS for address in targets(u).values()]
    for text in texts:
        leaked = [p for p in personal if p in text]
        assert leaked == []


def test_the_api_registers_its_own_port_and_counts_what_it_produced(
    settings: Settings, db_schema: tuple[Settings, str], tmp_path: Path
) -> None:
    """`notify api run` on port 0 picks its port up front, registers it with path /metrics, and its
    /metrics counts the accepted notification as produced to the requests topic."""
    own = schema_settings(settings, db_schema[1])
    pool = make_pool(own, max_size=1)
    key = KeyStore(pool).create("shop", [Scope.SEND])[1]
    UserDataRepository(pool).upsert_user("ann")
    pool.close()
    folder = tmp_path / "targets"
    env = {
        "NOTIFY_KAFKA_BOOTSTRAP": own.kafka_bootstrap,
        "NOTIFY_DATABASE_URL": own.database_url.get_secret_value(),
        "NOTIFY_TOPIC_PREFIX": own.topic_prefix,
        "NOTIFY_API_PORT": "0",
        "NOTIFY_METRICS_TARGETS_DIR": str(folder),
    }
    api = Process(["api", "run"], env, tmp_path / "api.log")
    try:
        deadline = time.monotonic() + 60
        while not metrics_scrape.targets(folder):
            assert api.alive(), api.tail()
            assert time.monotonic() < deadline, "the API registered no target"
            time.sleep(0.2)
        [target] = metrics_scrape.targets(folder)
        assert (target.job, target.path) == ("notify-api", "/metrics")
        assert target.instance == target.address.rsplit(":", 1)[1]  # its port: stable, and its own
        body = json.dumps({"user_id": "ann", "template_id": "welcome", "category": "account"}).encode()
        post = urllib.request.Request(
            f"http://{target.address}/v1/notifications",
            data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        while True:  # the port is named before the server listens: until it answers
            try:
                metrics_scrape.scrape(target.address, "/healthz")
                break
            except urllib.error.URLError:
                assert api.alive(), api.tail()
                assert time.monotonic() < deadline, "the API never answered"
                time.sleep(0.2)
        with urllib.request.urlopen(post, timeout=10) as response:  # noqa: S310 - http on loopback
            assert response.status == 202
        found = target.scrape()
        produced = {"notify_process": "api", "messaging_destination_name": "requests"}
        assert total(found, "notify_messages_produced_total", **produced) == 1
        assert total(found, "notify_api_notifications_accepted_total") == 1
        assert duplicate_series(found) == []
    finally:
        code = api.stop()
    assert code == 0, api.tail()
    assert metrics_scrape.targets(folder) == []

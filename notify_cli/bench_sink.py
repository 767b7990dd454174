"""``notify bench sink``: the analytics sink's events/s over a backlog, next to a raw consume-and-decode
baseline in the same run, and the report's time over what it wrote (issue 11).

On throw-away topics (``<bench-xxxxxxxx>.events`` and its DLQ, the default partition count) it
produces a backlog (``--events``, default 1,000,000) with one idempotent producer, then drains it
three times (baseline, sink, baseline), each in a consumer group of its own from the earliest offset:

* the baseline: a bare ``make_consumer`` consumer (``read_committed``) that decodes every record with
  the codec and does nothing else;
* the sink: ``analytics_sink.sink.Sink`` in burst mode, writing Parquet to a temporary directory with
  the default flush settings. It is timed from ``run()`` to the moment the last file's ``put``
  returned (durable: fsynced and renamed). The benchmark knows the backlog's size, so once the sink
  has consumed the last record it asks it to stop (``Sink.stop``, what SIGTERM does): the sink then
  flushes and commits everything through its own shutdown path, and burst mode's idle wait (which
  only exists because a sink cannot know where a backlog ends) is not counted.

The baseline runs twice, before and after the sink, each in a new group: this machine's speed drifts
by tens of percent between minutes, and the two passes bracket the sink's. The sink is compared with
their mean, and a drift over ``DRIFT_WARN`` between them is flagged. Each figure is from the start of
consuming (group join included, the same for all) and, for the steady state, from the first record.
The Parquet files are then checked (one row per event, every ``event_id`` once) and ``make_report``
runs over them, ``--by channel`` and ``--by channel,template``. Goal: the sink at >= 50% of the
baseline's events/s.

The backlog: ``DISTINCT_NOTIFICATIONS`` notifications with realistic lifecycles (ROUTED,
FAILED_RETRYING, SENT, OPENED, CLICKED over the four channels, several templates, seven days) are
encoded once, a few thousand events; each encoded event is cut around its ``event_id``,
``notification_id`` and ``delivery_id`` (36 ASCII characters each), and the backlog cycles through
them substituting fresh ids of the same length, so the Avro length prefixes stay valid. ``event_id``
is a run-random UUID prefix and the event's sequence number (unique across the backlog, checked in
the Parquet); notification and delivery ids are numbered per cycle the same way, so every cycle
is a new set of notifications with the same shape. Records are keyed by notification id and carry
the content-type header, as the pipeline's writers do.

Everything runs in this process: CPU per phase (``bench_cpu``) counts its cores (librdkafka threads
included) and the rest of the machine (the broker); each consuming phase also records the time
Python's cyclic garbage collector took (``gc_s``), which grows with the events the sink buffers.
Topics, consumer groups and files are removed afterwards; figures go to ``--out``.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import gc
import json
import os
import platform
import random
import resource
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import confluent_kafka

from notify_cli import bench_cpu
from notify_core.codec import CONTENT_TYPE_HEADERS, EVENT, default_codec
from notify_core.events import event
from notify_core.kafka_clients import make_admin, make_consumer, make_producer, produce_waiting, translate
from notify_core.settings import Settings
from notify_core.topic_admin import apply_topics
from notify_core.topics import Channel, topic_names, topic_specs

GOAL_SINK_VS_BASELINE = 0.5
DISTINCT_NOTIFICATIONS = 1_200  # about 3,500 distinct encoded events
DAYS = 7
SEED = 11  # the same backlog shape every run (the ids differ)
CONSUME_BATCH = 5_000  # as analytics_sink.sink.CONSUME_BATCH: the baseline consumes the same way
WATCH_S = 0.02  # how often the sink's consumed count is looked at
QUIET_S = 1.0  # the machine's load is sampled this long before the run: others may be using it
BUSY_CORES = 0.3  # an idle broker and PostgreSQL take less than this
DRIFT_WARN = 0.1  # the two baseline passes further apart than this: the ratio is uncertain

_ID_LENGTH = 36
_PLACEHOLDER = {"event": "E", "notification": "N", "delivery": "D"}
_TEMPLATES: tuple[tuple[str, str, str], ...] = (  # (template, service, category)
    ("order-shipped", "orders", "transactional"),
    ("order-delivered", "orders", "transactional"),
    ("payment-failed", "billing", "transactional"),
    ("password-reset", "accounts", "security"),
    ("new-login", "accounts", "security"),
    ("weekly-digest", "content", "digest"),
    ("cart-reminder", "marketing", "promotional"),
    ("spring-sale", "marketing", "promotional"),
)
_LOCALES = ("en-GB", "en-US", "de-DE", "fr-FR", "es-ES", "it-IT")
_PROVIDERS = {Channel.IOS: "apns", Channel.ANDROID: "fcm", Channel.SMS: "sns", Channel.EMAIL: "smtp"}
_RETRY_REASONS = ("Timeout", "TooManyRequests", "ServiceUnavailable", "InternalServerError")


def register_kind(kinds: Any) -> None:
    parser = kinds.add_parser("sink", help="analytics sink events/s vs a raw consume-and-decode baseline")
    parser.add_argument("--events", type=int, default=1_000_000, help="the backlog's size")
    parser.add_argument(
        "--idle", type=float, default=3.0, help="the sink's burst-mode idle_s (a stop it should not need)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/sink.json"))
    parser.set_defaults(handler=run)


# --- the backlog -------------------------------------------------------------------------------------
def _placeholder(kind: str, n: int) -> str:
    return _PLACEHOLDER[kind] * (_ID_LENGTH - 12) + f"{n:012x}"


def _id_prefix() -> str:
    """24 characters of a random UUID4 (version and variant included): + 12 hex digits, a UUID."""
    return str(uuid.uuid4())[: _ID_LENGTH - 12]


def _lifecycle(rng: random.Random, n: int, first_day: date, deliveries: list[int]) -> list[dict[str, Any]]:
    """The events of notification ``n``: one ROUTED per channel, then per delivery maybe a retry, the
    send, and for some an open and a click; ``deliveries`` hands out the delivery numbers."""
    template, service, category = rng.choice(_TEMPLATES)
    locale = rng.choice(_LOCALES)
    user = f"user-{rng.randrange(250_000)}"
    day = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC) + timedelta(days=n % DAYS)
    requested = day + timedelta(seconds=rng.uniform(0, 86_000))
    picked = rng.sample(list(Channel), k=rng.choice((1, 1, 2, 2, 3)))
    common: dict[str, Any] = {
        "notification_id": _placeholder("notification", n),
        "user_id": user,
        "service": service,
        "category": category,
        "template_id": template,
        "locale": locale,
    }
    out: list[dict[str, Any]] = []
    for channel in picked:
        delivery = len(deliveries)
        deliveries.append(delivery)
        at = requested + timedelta(milliseconds=rng.uniform(3, 60))
        ids: dict[str, Any] = {
            **common,
            "delivery_id": _placeholder("delivery", delivery),
            "channel": channel,
        }
        scheduled = {"deliver_at": (at + timedelta(hours=1)).isoformat()} if rng.random() < 0.05 else {}
        out.append(event("ROUTED", occurred_at=at, requested_at=requested, attributes=scheduled, **ids))
        provider = _PROVIDERS[channel]
        attempt = 1
        if rng.random() < 0.12:
            at += timedelta(milliseconds=rng.uniform(200, 2_000))
            reason = rng.choice(_RETRY_REASONS)
            latency = round(rng.uniform(50, 5_000), 3)
            out.append(
                event(
                    "FAILED_RETRYING",
                    occurred_at=at,
                    reason=reason,
                    provider=provider,
                    attempt=1,
                    latency_ms=latency,
                    **ids,
                )
            )
            attempt = 2
            at += timedelta(seconds=rng.choice((1, 10, 60)))
        at += timedelta(milliseconds=rng.uniform(30, 900))
        out.append(
            event(
                "SENT",
                occurred_at=at,
                provider=provider,
                provider_message_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                attempt=attempt,
                latency_ms=round(rng.lognormvariate(4.5, 0.6), 3),
                **ids,
            )
        )
        if channel is Channel.SMS or rng.random() > (0.3 if channel is Channel.EMAIL else 0.45):
            continue
        at += timedelta(minutes=rng.expovariate(1 / 240))  # some open the next day
        source = "pixel" if channel is Channel.EMAIL else "app"
        out.append(event("OPENED", occurred_at=at, attributes={"source": source}, **ids))
        if rng.random() < 0.35:
            at += timedelta(seconds=rng.uniform(2, 300))
            url = f"https://shop.example.com/{template}/{rng.randrange(10**8):08d}?utm_source=notify"
            out.append(
                event("CLICKED", occurred_at=at, attributes={"url": f"{url}&utm_medium={channel}"}, **ids)
            )
    return out


@dataclass(frozen=True)
class _Encoded:
    """One encoded event cut around its three ids: ``pieces`` are the bytes before the event id,
    between it and the notification id, between that and the delivery id, and after."""

    pieces: tuple[bytes, bytes, bytes, bytes]
    notification: int
    delivery: int


def _cut(value: bytes, k: int, notification: int, delivery: int) -> _Encoded:
    marks = [
        _placeholder("event", k).encode(),
        _placeholder("notification", notification).encode(),
        _placeholder("delivery", delivery).encode(),
    ]
    at = [value.find(mark) for mark in marks]
    if any(value.count(mark) != 1 for mark in marks) or at != sorted(at):
        raise RuntimeError("an encoded event does not hold its three ids once each, in field order")
    ends = [a + _ID_LENGTH for a in at]
    pieces = (value[: at[0]], value[ends[0] : at[1]], value[ends[1] : at[2]], value[ends[2] :])
    return _Encoded(pieces, notification, delivery)


@dataclass(frozen=True)
class Backlog:
    encoded: tuple[_Encoded, ...]
    notifications: int  # per cycle
    deliveries: int  # per cycle
    first_day: date
    encode_s: float
    avg_bytes: float
    mix: dict[str, int]  # event types among the distinct events
    channels: dict[str, int]

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=DAYS - 1)

    @classmethod
    def build(cls, today: date) -> Backlog:
        rng = random.Random(SEED)  # noqa: S311 (the shape of test data, not a secret)
        first_day = today - timedelta(days=DAYS)
        started = time.perf_counter()
        codec = default_codec()
        deliveries: list[int] = []
        encoded: list[_Encoded] = []
        mix: dict[str, int] = {}
        channels: dict[str, int] = {}
        for n in range(DISTINCT_NOTIFICATIONS):
            for record in _lifecycle(rng, n, first_day, deliveries):
                record["event_id"] = _placeholder("event", len(encoded))
                value = codec.encode(EVENT, record)
                delivery = int(str(record["delivery_id"])[-12:], 16)
                encoded.append(_cut(value, len(encoded), n, delivery))
                mix[record["event_type"]] = mix.get(record["event_type"], 0) + 1
                channels[record["channel"]] = channels.get(record["channel"], 0) + 1
        elapsed = time.perf_counter() - started
        avg = sum(sum(len(p) for p in e.pieces) + 3 * _ID_LENGTH for e in encoded) / len(encoded)
        return cls(
            tuple(encoded), DISTINCT_NOTIFICATIONS, len(deliveries), first_day, elapsed, avg, mix, channels
        )

    def records(self, count: int) -> list[tuple[bytes, bytes]]:
        """``count`` (key, value) pairs: the encoded events in turn, each with fresh ids."""
        events, notifications, deliveries = _id_prefix(), _id_prefix(), _id_prefix()
        per_cycle = len(self.encoded)
        out: list[tuple[bytes, bytes]] = []
        append = out.append
        for i in range(count):
            cycle, k = divmod(i, per_cycle)
            one = self.encoded[k]
            a, b, c, d = one.pieces
            nid = f"{notifications}{cycle * self.notifications + one.notification:012x}".encode()
            did = f"{deliveries}{cycle * self.deliveries + one.delivery:012x}".encode()
            append((nid, b"".join((a, f"{events}{i:012x}".encode(), b, nid, c, did, d))))
        return out


# --- the phases --------------------------------------------------------------------------------------
def _cpu_pids() -> dict[str, int]:
    return {"bench_process": os.getpid()}


def _produce(settings: Settings, topic: str, records: Sequence[tuple[bytes, bytes]]) -> dict[str, Any]:
    failed: list[str] = []

    def report(err: confluent_kafka.KafkaError | None, _msg: confluent_kafka.Message) -> None:
        if err is not None:
            failed.append(translate(err, "bench produce").args[0])

    # Delivery reports for failures only: a Python callback per record would be most of the cost.
    overrides: dict[str, Any] = {"on_delivery": report, "delivery.report.only.error": True}
    producer = make_producer(settings, **overrides)
    headers = list(CONTENT_TYPE_HEADERS)
    before, started = bench_cpu.snapshot(_cpu_pids()), time.perf_counter()
    for n, (key, value) in enumerate(records):
        produce_waiting(producer, topic, value, key=key, headers=headers)
        if n % 1_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    cores = bench_cpu.cores_between(before, bench_cpu.snapshot(_cpu_pids()))
    if remaining or failed:
        raise RuntimeError(f"backlog: {remaining} unacknowledged, {len(failed)} failed ({failed[:3]})")
    return {
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(records) / elapsed),
        "linger_ms": settings.kafka_producer()["linger.ms"],
        "compression": settings.kafka_producer()["compression.type"],
        "cpu_cores": cores,
    }


class _GcTime:
    """Time spent in Python's cyclic garbage collector while entered (``gc.callbacks``): pauses
    that grow with the objects a phase keeps alive, as the sink's buffered events."""

    def __init__(self) -> None:
        self.seconds, self.full, self._began = 0.0, 0, 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._began
        self.full += info["generation"] == 2

    def __enter__(self) -> _GcTime:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def figures(self) -> dict[str, float]:
        return {"gc_s": round(self.seconds, 3), "gc_full_collections": self.full}


def _baseline(settings: Settings, topic: str, count: int, group: str) -> dict[str, Any]:
    """Consume every record and decode it, nothing else."""
    codec = default_codec()
    consumer = make_consumer(settings, group)
    before, started = bench_cpu.snapshot(_cpu_pids()), time.perf_counter()
    consumer.subscribe([topic])
    decoded, first, deadline = 0, None, time.monotonic() + _bound_s(count)
    try:
        with _GcTime() as gc_time:
            while decoded < count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"baseline: {decoded} of {count} records within {_bound_s(count):g}s")
                for msg in consumer.consume(CONSUME_BATCH, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                            raise translate(err, "baseline consume")
                        continue
                    codec.decode(msg.value() or b"", EVENT)
                    decoded += 1
                if first is None and decoded:
                    first = time.perf_counter()
        done = time.perf_counter()
        cores = bench_cpu.cores_between(before, bench_cpu.snapshot(_cpu_pids()))
    finally:
        consumer.close()
    return {
        "events": decoded,
        "seconds": round(done - started, 3),
        "events_per_s": round(count / (done - started)),
        "to_first_record_s": round((first or done) - started, 3),
        "events_per_s_after_first_record": round(count / max(done - (first or started), 1e-3)),
        **gc_time.figures(),
        "cpu_cores": cores,
    }


def _bracket(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The two baseline passes, and their mean: what the sink is compared with."""
    mean = {
        key: round((before[key] + after[key]) / 2)
        for key in ("events_per_s", "events_per_s_after_first_record")
    }
    return {
        "events": min(before["events"], after["events"]),
        "seconds": round((before["seconds"] + after["seconds"]) / 2, 3),
        **mean,
        "drift": round(after["events_per_s"] / before["events_per_s"] - 1, 3),
        "cpu_cores": before["cpu_cores"],  # each pass has its own below
        "before_sink": before,
        "after_sink": after,
    }


def _bound_s(count: int) -> float:
    """A phase that has not finished by now is stuck (about 100 times the expected time)."""
    return 120.0 + count / 1_000


@dataclass
class _Marks:
    """When things happened in the sink's run (``perf_counter``), and what it wrote."""

    first_store_call: float | None = None  # the recovery read right after the assignment
    first_record: float | None = None
    all_consumed: float | None = None
    first_file: float | None = None
    last_durable: float | None = None
    files: int = 0
    bytes: int = 0
    manifest_puts: int = 0
    puts_s: list[float] = field(default_factory=list)


class _TimedStore:
    """The sink's local store, noting when each ``put`` returned (the object durable) and its size."""

    def __init__(self, inner: Any, marks: _Marks) -> None:
        self._inner, self._marks = inner, marks

    @property
    def location(self) -> str:
        return str(self._inner.location)

    def _touched(self) -> None:
        if self._marks.first_store_call is None:
            self._marks.first_store_call = time.perf_counter()

    def put(self, key: str, data: bytes) -> None:
        self._touched()
        began = time.perf_counter()
        self._inner.put(key, data)
        now = time.perf_counter()
        self._marks.puts_s.append(now - began)
        self._marks.last_durable = now
        if key.endswith(".parquet"):
            self._marks.files += 1
            self._marks.bytes += len(data)
            self._marks.first_file = self._marks.first_file or now
        else:
            self._marks.manifest_puts += 1

    def get(self, key: str) -> bytes | None:
        self._touched()
        data: bytes | None = self._inner.get(key)
        return data

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def list(self, prefix: str = "") -> builtins.list[str]:
        keys: builtins.list[str] = self._inner.list(prefix)
        return keys


def _sink(settings: Settings, count: int, idle_s: float) -> dict[str, Any]:
    from analytics_sink.sink import Sink
    from analytics_sink.store import store_for

    marks = _Marks()
    sink = Sink(settings, store=_TimedStore(store_for(settings), marks))
    done = threading.Event()

    def watch() -> None:
        """Stop the sink once it has consumed the whole backlog: it flushes and commits it all."""
        while not done.wait(WATCH_S):
            consumed = sink.stats.records
            if consumed and marks.first_record is None:
                marks.first_record = time.perf_counter()
            if consumed >= count:
                marks.all_consumed = time.perf_counter()
                sink.stop()
                return

    watcher = threading.Thread(target=watch, name="bench-sink-watch", daemon=True)
    before, started = bench_cpu.snapshot(_cpu_pids()), time.perf_counter()
    watcher.start()
    try:
        with _GcTime() as gc_time:
            stats = sink.run(stop_when_idle=True, idle_s=idle_s, max_runtime_s=_bound_s(count))
    finally:
        done.set()
        watcher.join()
    returned = time.perf_counter()
    cores = bench_cpu.cores_between(before, bench_cpu.snapshot(_cpu_pids()))
    last = marks.last_durable or returned
    first = marks.first_record or started
    return {
        "events": stats.records,
        "rows": stats.rows,
        "dead_letters": stats.dead_letters,
        "stopped": "backlog consumed" if marks.all_consumed is not None else "by itself (idle or bound)",
        "seconds": round(last - started, 3),
        # Rows durable, not the backlog: a sink that stopped early is not credited with the rest.
        "events_per_s": round(stats.rows / (last - started)),
        "to_first_record_s": round(first - started, 3),
        "events_per_s_after_first_record": round(stats.rows / max(last - first, 1e-3)),
        "last_record_to_last_durable_s": (
            round(last - marks.all_consumed, 3) if marks.all_consumed is not None else None
        ),
        "to_first_file_s": round(marks.first_file - started, 3) if marks.first_file else None,
        "run_returned_s": round(returned - started, 3),
        "files": marks.files,
        "bytes": marks.bytes,
        "bytes_per_event": round(marks.bytes / max(stats.rows, 1), 1),
        "manifest_puts": marks.manifest_puts,
        "put_latency": _put_latency(marks.puts_s),
        "sink_stats_files": stats.files,
        "flushes": dict(stats.flushes),
        "flush_rows": settings.sink_flush_rows,
        "flush_s": settings.sink_flush_s,
        "burst_idle_s": idle_s,
        **gc_time.figures(),
        "cpu_cores": cores,
    }


def _put_latency(samples: Sequence[float]) -> dict[str, float] | None:
    from notify_core.stats import summary_ms

    return summary_ms(samples) if samples else None


def _check(root: Path, count: int) -> dict[str, Any]:
    """What the Parquet files hold: one row per event of the backlog, every ``event_id`` once."""
    import duckdb

    files = sorted(str(p) for p in root.glob("date=*/*.parquet"))
    if not files:
        return {"rows": 0, "distinct_event_ids": 0, "dates": 0, "ok": count == 0}
    with duckdb.connect() as db:
        row = db.execute(
            "select count(*), count(distinct event_id), count(distinct cast(occurred_at as date))"
            " from read_parquet($files)",
            {"files": files},
        ).fetchone()
    rows, distinct, dates = row if row is not None else (0, 0, 0)
    return {"rows": rows, "distinct_event_ids": distinct, "dates": dates, "ok": rows == distinct == count}


def _report(root: Path, settings: Settings, backlog: Backlog) -> dict[str, Any]:
    from analytics_sink.report import make_report
    from analytics_sink.report_model import Period

    period = Period(backlog.first_day, backlog.last_day)
    out: dict[str, Any] = {
        "from": str(period.first_day),
        "to": str(period.last_day),
        "late_days": period.late_days,
    }
    for by in (("channel",), ("channel", "template")):
        before, started = bench_cpu.snapshot(_cpu_pids()), time.perf_counter()
        outcome = make_report(str(root), settings, period, by)
        elapsed = time.perf_counter() - started
        out[",".join(by)] = {
            "seconds": round(elapsed, 3),
            "events_read": outcome.events,
            "groups": len(outcome.report.groups),
            "sent": sum(g.sent for g in outcome.report.groups),
            "opened": sum(g.opened for g in outcome.report.groups),
            "cpu_cores": bench_cpu.cores_between(before, bench_cpu.snapshot(_cpu_pids())),
        }
    return out


# --- the run -----------------------------------------------------------------------------------------
@contextmanager
def _topics(settings: Settings, groups: Sequence[str]) -> Iterator[str]:
    """The events topic and its DLQ under ``settings``' prefix; deleted afterwards, with ``groups``."""
    names = topic_names(settings)
    specs = [s for s in topic_specs(settings) if s.name in (names.events, names.events_dlq)]
    admin = make_admin(settings)
    apply_topics(admin, specs)
    try:
        yield names.events
    finally:
        for future in admin.delete_topics([s.name for s in specs], operation_timeout=30).values():
            future.result()
        for future in admin.delete_consumer_groups(list(groups), request_timeout=30).values():
            with contextlib.suppress(confluent_kafka.KafkaException):  # a group that never formed
                future.result()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.events < 1:
        print("error: --events must be at least 1")
        return 2
    # SIGTERM's default skips every finally: the topics and the temporary files would stay.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _run(args, settings)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _background() -> dict[str, float] | None:
    """Cores the machine uses before the run (the stack idling, and whatever else runs here)."""
    before = bench_cpu.snapshot(_cpu_pids())
    time.sleep(QUIET_S)
    return bench_cpu.cores_between(before, bench_cpu.snapshot(_cpu_pids()))


def _run(args: argparse.Namespace, settings: Settings) -> int:
    run_id = uuid.uuid4().hex[:8]
    background = _background()
    groups = (f"bench-raw1-{run_id}", f"bench-raw2-{run_id}", f"bench-sink-{run_id}")
    backlog = Backlog.build(datetime.now(UTC).date())
    started = time.perf_counter()
    records = backlog.records(args.events)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as workdir:
        bench = settings.model_copy(
            update={"topic_prefix": f"bench-{run_id}", "sink_group": groups[2], "sink_output": workdir}
        )
        with _topics(bench, groups) as topic:
            produce = _produce(bench, topic, records)
            del records
            before = _baseline(bench, topic, args.events, groups[0])
            sink = _sink(bench, args.events, args.idle)
            after = _baseline(bench, topic, args.events, groups[1])
        baseline = _bracket(before, after)
        check = _check(Path(workdir), args.events)
        report = _report(Path(workdir), bench, backlog) if check["ok"] else None
    produce["build_s"] = round(build_s, 3)
    figures = _figures(args, settings, backlog, produce, baseline, sink, check, report)
    figures["background_cpu_cores"] = background
    figures["topic_prefix"] = bench.topic_prefix  # deleted by now: for whoever checks that it was
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    _print(figures, args.out)
    if not check["ok"]:
        print(
            f"error: the Parquet files hold {check['rows']} rows, {check['distinct_event_ids']} distinct"
            f" event ids; the backlog was {args.events} events"
        )
        return 1
    return 0


def _versions() -> dict[str, str]:
    import duckdb
    import fastavro
    import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]

    return {
        "python": platform.python_version(),
        "librdkafka": confluent_kafka.libversion()[0],
        "confluent_kafka": confluent_kafka.__version__,
        "fastavro": fastavro.__version__,
        "pyarrow": pa.__version__,
        "duckdb": duckdb.__version__,
    }


def _figures(
    args: argparse.Namespace,
    settings: Settings,
    backlog: Backlog,
    produce: dict[str, Any],
    baseline: dict[str, Any],
    sink: dict[str, Any],
    check: dict[str, Any],
    report: dict[str, Any] | None,
) -> dict[str, Any]:
    ratio = sink["events_per_s"] / baseline["events_per_s"]
    steady = sink["events_per_s_after_first_record"] / baseline["events_per_s_after_first_record"]
    return {
        "benchmark": "sink",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "cpus": os.cpu_count(),
        "versions": _versions(),
        "bootstrap": settings.kafka_bootstrap,
        "events": args.events,
        "partitions": settings.topic_partitions,
        "backlog": {
            "distinct_encoded_events": len(backlog.encoded),
            "notifications_per_cycle": backlog.notifications,
            "deliveries_per_cycle": backlog.deliveries,
            "event_types": backlog.mix,
            "channels": backlog.channels,
            "days": [str(backlog.first_day), str(backlog.last_day)],
            "avg_record_bytes": round(backlog.avg_bytes, 1),
            "encode_distinct_s": round(backlog.encode_s, 3),
            "ids": "event_id: run-random UUID prefix + sequence number; notification/delivery ids per cycle",
        },
        "produce": produce,
        "raw_consume_decode_baseline": baseline,
        "sink": sink,
        "parquet_check": check,
        "report": report,
        "sink_vs_baseline": round(ratio, 3),
        "sink_vs_baseline_after_first_record": round(steady, 3),
        # Only a sink that landed the whole backlog, each event once, can meet it.
        "goals": {
            "sink_vs_baseline_min": GOAL_SINK_VS_BASELINE,
            "met": ratio >= GOAL_SINK_VS_BASELINE and bool(check["ok"]),
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _cores(cpu: dict[str, float] | None) -> str:
    if cpu is None:
        return "cores used: unknown (no /proc)"
    parts = [f"{name} {value:.2f}" for name, value in cpu.items() if name not in ("cpus", "machine")]
    return f"cores used: {', '.join(parts)}; machine {cpu['machine']:.2f} of {cpu['cpus']:g}"


def _print(figures: dict[str, Any], out: Path) -> None:
    produce, base, sink = figures["produce"], figures["raw_consume_decode_baseline"], figures["sink"]
    report, goals = figures["report"], figures["goals"]
    rows = [
        (
            "produce backlog (1 idempotent producer)",
            f"{produce['events_per_s']:,} ev/s",
            f"{produce['seconds']:.2f} s",
            "",
            "",
        ),
        *(
            (
                f"raw consume + decode, {when} the sink",
                f"{base[key]['events_per_s']:,} ev/s",
                f"{base[key]['seconds']:.2f} s",
                "",
                "",
            )
            for when, key in (("before", "before_sink"), ("after", "after_sink"))
        ),
        ("  baseline: their mean", f"{base['events_per_s']:,} ev/s", f"drift {base['drift']:+.0%}", "", ""),
        ("sink to durable Parquet", f"{sink['events_per_s']:,} ev/s", f"{sink['seconds']:.2f} s", "", ""),
        (
            "sink / baseline",
            f"{figures['sink_vs_baseline']:.2f}",
            f"after 1st record {figures['sink_vs_baseline_after_first_record']:.2f}",
            f">= {goals['sink_vs_baseline_min']:.2f}",
            "PASS" if goals["met"] else "FAIL",
        ),
    ]
    if report is not None:
        for by in ("channel", "channel,template"):
            rows.append(
                (
                    f"report --by {by}",
                    f"{report[by]['events_read']:,} events",
                    f"{report[by]['seconds']:.2f} s",
                    "",
                    "",
                )
            )
    print(
        f"sink benchmark ({figures['events']:,} events, {figures['machine']}, {figures['cpus']} CPUs)"
        f" -> {out}"
    )
    print(f"  {'':<40} {'figure':>16}  {'time':<24} {'goal':<8} verdict")
    for label, figure, seconds, goal, verdict in rows:
        print(f"  {label:<40} {figure:>16}  {seconds:<24} {goal:<8} {verdict}".rstrip())
    check = figures["parquet_check"]
    print(
        f"  sink wrote {sink['files']} files, {sink['bytes'] / 1e6:.1f} MB"
        f" ({sink['bytes_per_event']} B/event);"
        f" Parquet rows {check['rows']:,}, distinct event ids {check['distinct_event_ids']:,}:"
        f" {'OK' if check['ok'] else 'MISMATCH'}"
    )
    phases = [
        ("produce", produce),
        ("baseline before", base["before_sink"]),
        ("sink", sink),
        ("baseline after", base["after_sink"]),
    ]
    if report is not None:
        phases += [(f"report {by}", report[by]) for by in ("channel", "channel,template")]
    print("  (rest: the broker serving the phase, and anything else on the machine)")
    for name, phase in [("before the run", {"cpu_cores": figures["background_cpu_cores"]}), *phases]:
        gc_pauses = f"; Python GC {phase['gc_s']:.1f} s" if "gc_s" in phase else ""
        print(f"  {name:<24} {_cores(phase['cpu_cores'])}{gc_pauses}")
    if abs(base["drift"]) > DRIFT_WARN:
        print(
            f"  note: the baseline passes differ by {base['drift']:+.0%}: this machine's speed changed"
            " during the run, so the ratio is uncertain; run it again"
        )
    background = figures["background_cpu_cores"]
    if background is not None and background["machine"] > BUSY_CORES:
        print(
            f"  note: the machine was busy before the run ({background['machine']:.2f} cores):"
            " the figures reflect it"
        )

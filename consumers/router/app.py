"""The router process: consume requests, route them, write everything in one Kafka transaction.

A thin loop around ``batch.plan_batch``. For each batch: decode and validate (bad records are
dead-lettered, never fatal), read what routing needs from PostgreSQL (cached), plan, write the
state rows (dedupe marks, cap counters, deferred messages) in one database transaction, then
produce the channel messages, the events and the consumed offsets in one Kafka transaction.

Deferred messages (quiet hours, ``send_at``) wait in ``router_deferred``; every second the loop
releases those that are due, in their own Kafka transaction, so a user's late message never holds
up anyone else's.
"""

from __future__ import annotations

import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import confluent_kafka
import psycopg
import structlog

from consumers.router.batch import Lookups, Parsed, parse_records, plan_batch
from consumers.router.policy import cap_key
from consumers.router.render import Renderer
from consumers.router.state import RouterState
from notify_core.burst import BurstStop
from notify_core.codec import CONTENT_TYPE_HEADERS, REQUEST, default_codec
from notify_core.kafka_clients import make_consumer, make_producer, translate
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.stats import LATENCY_SAMPLES
from notify_core.topics import Channel, topic_names
from notify_core.userdata.repository import UserDataRepository

log = structlog.get_logger("router")
RELEASE_EVERY_S = 1.0
RELEASE_BATCH = 500
TXN_TIMEOUT_S = 30.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RouterStats:
    batches: int = 0
    records: int = 0
    released: int = 0
    aborted: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    # Wall time of the latest committed batches: bounded, the router runs for weeks.
    batch_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    first_batch_at: float | None = None  # time.monotonic() when the first batch started
    last_batch_at: float | None = None  # ... and when the last one committed


class Router:
    """One router process. ``run(stop_when_idle=True)`` is the burst mode tests use."""

    def __init__(
        self,
        settings: Settings,
        connect: Callable[[], psycopg.Connection[Any]],
        repository: UserDataRepository,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._names = topic_names(settings)
        self._codec = default_codec()
        self._repo = repository
        self._connect = connect
        self._clock = clock
        self._renderer = Renderer(max_sms_segments=settings.max_sms_segments)
        self._stopping = False
        self.stats = RouterStats()

    def stop(self, *_: object) -> None:
        self._stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(
        self, *, stop_when_idle: bool = False, idle_s: float = 3.0, max_runtime_s: float | None = None
    ) -> RouterStats:
        settings = self._settings
        consumer = make_consumer(settings, settings.router_group)
        producer = make_producer(
            settings, transactional_id=f"{settings.router_group}-{settings.router_instance_id}"
        )
        conn = self._connect()
        state = RouterState(conn, dedupe_window=timedelta(seconds=settings.dedupe_window_s))
        started = time.monotonic()
        burst = BurstStop(idle_s, started)
        last_release = 0.0
        try:
            producer.init_transactions(TXN_TIMEOUT_S)
            consumer.subscribe([self._names.requests])
            while not self._stopping:
                messages = consumer.consume(settings.router_batch_size, timeout=0.2)
                records = [Record.from_message(m) for m in messages if self._usable(m)]
                if records:
                    self._process(records, consumer, producer, conn, state)
                    burst.activity(time.monotonic(), consumed=True)
                if time.monotonic() - last_release >= RELEASE_EVERY_S:
                    if self._release_due(producer, conn, state):
                        burst.activity(time.monotonic())
                    last_release = time.monotonic()
                now = time.monotonic()
                if (
                    stop_when_idle
                    and burst.idle(now)
                    and burst.should_stop(now, has_partitions=bool(consumer.assignment()))
                ):
                    break
                if max_runtime_s is not None and now - started > max_runtime_s:
                    break
        finally:
            consumer.close()
            conn.close()
        log.info(
            "router_stopped",
            batches=self.stats.batches,
            records=self.stats.records,
            released=self.stats.released,
            aborted=self.stats.aborted,
        )
        return self.stats

    def _usable(self, msg: confluent_kafka.Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != confluent_kafka.KafkaError._PARTITION_EOF:
            log.warning("consume_error", error=translate(err, "router consume").args[0])
        return False

    def _process(
        self,
        records: Sequence[Record],
        consumer: confluent_kafka.Consumer,
        producer: confluent_kafka.Producer,
        conn: psycopg.Connection[Any],
        state: RouterState,
    ) -> None:
        began = time.monotonic()
        now = self._clock()
        items = parse_records(records, lambda data: self._codec.decode(data, REQUEST))
        parsed = [i for i in items if isinstance(i, Parsed)]
        try:
            with conn.transaction():
                lookups = self._lookups(parsed, state, now)
                plan = plan_batch(
                    items,
                    lookups,
                    names=self._names,
                    renderer=self._renderer,
                    now=now,
                    fallback_locale=self._settings.fallback_locale,
                )
                immediate, deferred = [], []
                for out in plan.outputs:
                    value = self._codec.encode(out.schema, out.record)
                    if out.deliver_at is None:
                        immediate.append((out.topic, out.key, value))
                    else:
                        deferred.append(
                            (out.record["delivery_id"], out.deliver_at, out.topic, out.key, value)
                        )
                state.record(plan.seen_rows, plan.cap_rows, deferred, now)
            # The database commits first: if the Kafka commit below fails, the batch is replayed and
            # every state write above is keyed to be a no-op the second time.
            self._commit(producer, consumer, immediate, records)
        except confluent_kafka.KafkaException as exc:
            self._abort(producer, consumer, exc)
            return
        finished = time.monotonic()
        self.stats.batches += 1
        self.stats.records += len(records)
        self.stats.decisions.update(plan.counts)
        self.stats.batch_seconds.append(finished - began)
        self.stats.first_batch_at = self.stats.first_batch_at or began
        self.stats.last_batch_at = finished

    def _lookups(self, parsed: list[Parsed], state: RouterState, now: datetime) -> Lookups:
        users = sorted({p.request.user_id for p in parsed})
        categories = {c: self._repo.get_category(c) for c in {p.request.category for p in parsed}}
        template_ids = {p.request.template_id for p in parsed}
        # Usage matters only where a cap applies: most categories have none, and then no query runs.
        capped = [p for p in parsed if categories[p.request.category].daily_caps]
        own_cap_keys = [cap_key(str(p.request.notification_id), c) for p in capped for c in Channel]
        pairs = sorted({(p.request.user_id, p.request.category) for p in capped})
        return Lookups(
            seen=state.seen([k for p in parsed for k in p.keys], now),
            contexts=self._repo.get_contexts(users),
            categories=categories,
            templates={t: self._repo.get_templates(t) for t in template_ids},
            cap_usage=state.cap_usage(pairs, own_cap_keys, now),
        )

    def _commit(
        self,
        producer: confluent_kafka.Producer,
        consumer: confluent_kafka.Consumer,
        outputs: Sequence[tuple[str, bytes, bytes]],
        records: Sequence[Record],
    ) -> None:
        producer.begin_transaction()
        headers = CONTENT_TYPE_HEADERS
        for topic, key, value in outputs:
            self._produce(producer, topic, key, value, headers)
        next_offsets: dict[tuple[str, int], int] = {}
        for record in records:
            where = (record.topic, record.partition)
            next_offsets[where] = max(next_offsets.get(where, 0), record.offset + 1)
        offsets = [confluent_kafka.TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), TXN_TIMEOUT_S)
        producer.commit_transaction(TXN_TIMEOUT_S)

    @staticmethod
    def _produce(
        producer: confluent_kafka.Producer,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]],
    ) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
                return
            except BufferError:
                producer.poll(0.05)

    def _abort(
        self,
        producer: confluent_kafka.Producer,
        consumer: confluent_kafka.Consumer,
        exc: confluent_kafka.KafkaException,
    ) -> None:
        err = exc.args[0]
        self.stats.aborted += 1
        log.warning("router_batch_aborted", code=err.name(), error=err.str())
        if err.fatal():
            raise translate(err, "router transaction (fatal: restart the router)") from exc
        producer.abort_transaction(TXN_TIMEOUT_S)
        # Consume again from the last committed offsets: the aborted batch is replayed.
        assignment = consumer.assignment()
        for tp in consumer.committed(assignment, timeout=TXN_TIMEOUT_S):
            offset = tp.offset if tp.offset >= 0 else confluent_kafka.OFFSET_BEGINNING
            consumer.seek(confluent_kafka.TopicPartition(tp.topic, tp.partition, offset))

    def _release_due(
        self, producer: confluent_kafka.Producer, conn: psycopg.Connection[Any], state: RouterState
    ) -> int:
        now = self._clock()
        with conn.transaction():
            due = state.due(now, RELEASE_BATCH)
            if not due:
                return 0
            # Kafka commits before the rows are marked: a crash in between re-releases them, and the
            # channel workers' delivery log (keyed by delivery_id) keeps the user from a second copy.
            producer.begin_transaction()
            headers = CONTENT_TYPE_HEADERS
            for message in due:
                self._produce(producer, message.topic, message.key, message.value, headers)
            producer.commit_transaction(TXN_TIMEOUT_S)
            state.mark_released([m.delivery_id for m in due], now)
        self.stats.released += len(due)
        return len(due)

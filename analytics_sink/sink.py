"""The sink process: the analytics topic into date-partitioned Parquet, committed only once durable.

A thin loop, like the router's: consume ``<prefix>.events`` (group ``sink_group``,
``read_committed``, manual commits), decode each record (``notify_core.codec``: any writer version
resolved to the newest reader, so a new schema version flows through), buffer it (``batcher``), and
hand the partitions that are due, by row count or by age, to the ``Flusher``: manifest, files,
then the offset after them committed synchronously (``manifest`` says why in that order, and how a
restart after a crash at any point leaves no duplicate and no gap).

A record that does not decode is dead-lettered on ``<prefix>.events.dlq`` (``dead_letters``), with
the reason; its offset is committed only once the letter is acknowledged, and the sink goes on.
``run`` refuses to start (``ConfigError``) when that topic does not exist: its letters would never be
acknowledged.

SIGTERM (``stop``) and the end of a burst run flush what is buffered and commit it; if the output
or the broker stays away for ``SHUTDOWN_GRACE_S`` the process stops with an error instead, and the
records are read again by the next run. Revoked partitions drop their buffers: their new owner
reads them again from the committed offset, and recovers them the same way.

The one case this does not cover is a sink that lost its partitions without knowing it (stalled
past ``max.poll.interval.ms``, 5 minutes) and then finishes a flush after the new owner recovered
the partition: a file of that flush could stay behind. A rebalance cannot otherwise move a
partition in the middle of a flush: the cooperative protocol waits for this loop to give it up.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import time
from collections.abc import Callable

import confluent_kafka
import structlog

from analytics_sink.batcher import Batcher
from analytics_sink.columns import event_schema
from analytics_sink.dead_letters import DeadLetters
from analytics_sink.exceptions import SinkError
from analytics_sink.flusher import KAFKA_TIMEOUT_S, Flusher, SinkStats
from analytics_sink.metrics import SinkMetrics
from analytics_sink.store import Store, store_for
from notify_core.burst import BurstStop
from notify_core.codec import EVENT, default_codec
from notify_core.events import Failure
from notify_core.exceptions import ConfigError, DecodeError
from notify_core.fencing import RebuildBudget
from notify_core.instruments import Instruments
from notify_core.kafka_clients import fatal_error, make_consumer, make_producer, translate
from notify_core.outage import Outage
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.topics import topic_names

__all__ = ["Sink", "SinkStats"]

log = structlog.get_logger("sink")
CONSUME_BATCH = 5_000
SHUTDOWN_GRACE_S = 30.0
GC_THRESHOLD = 50_000  # allocations between young-generation passes while the sink runs (default 700)


class Sink:
    """One sink process. ``run(stop_when_idle=True)`` is the burst mode tests use."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
        instruments: Instruments | None = None,
    ) -> None:
        self._settings = settings
        names = topic_names(settings)
        self._metrics = SinkMetrics(instruments or Instruments.disabled(), names)
        self.topic, self.dlq_topic = names.events, names.events_dlq
        self.store = store if store is not None else store_for(settings)
        self._codec = default_codec()
        self._clock = clock
        self._batcher = Batcher(
            flush_rows=settings.sink_flush_rows, flush_s=settings.sink_flush_s, clock=clock
        )
        self.stats = SinkStats()
        self._stopping = False
        self._rebuilds = RebuildBudget()
        self._dlq: DeadLetters
        self._flusher: Flusher
        # Here, not in the flusher ``run`` builds: readable (no outage yet) before ``run``.
        self._output = Outage("sink_output")
        self._broker = Outage("broker")

    @property
    def output(self) -> Outage:
        """The output's health as this sink sees it (outages counted, for stats and tests)."""
        return self._output

    @property
    def broker(self) -> Outage:
        """The broker's health as this sink's flushes see it (a failed offset commit, recovery read
        or unacknowledged dead letter counts as a broker outage), for stats and tests."""
        return self._broker

    def stop(self, *_: object) -> None:
        self._stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(
        self, *, stop_when_idle: bool = False, idle_s: float = 3.0, max_runtime_s: float | None = None
    ) -> SinkStats:
        producer = make_producer(self._settings)
        self._check_dlq_topic(producer)
        self._dlq = DeadLetters(producer, self.dlq_topic)
        self._flusher = Flusher(
            self.store,
            self._batcher,
            self._dlq,
            schema=event_schema(self._codec),
            schema_version=self._codec.versions(EVENT)[-1],
            stats=self.stats,
            clock=self._clock,
            output=self._output,
            broker=self._broker,
        )
        consumer = self._subscribed()
        started = time.monotonic()
        burst = BurstStop(idle_s, started)
        # Full buffers are flushed after each batch: a small batch for small flushes bounds memory.
        batch = min(CONSUME_BATCH, self._settings.sink_flush_rows)
        # Buffered events hold no reference cycles (reference counting frees them), yet hundreds of
        # thousands of them made the collector re-scan the heap again and again: measured 7-10 s of
        # 1M events in GC. Rarer passes while the loop runs; the old thresholds come back after.
        thresholds = gc.get_threshold()
        gc.set_threshold(GC_THRESHOLD, 10, 10)
        try:
            while not self._stopping:
                messages = consumer.consume(batch, timeout=0.2)
                if any(_fatal(m) for m in messages):
                    consumer = self._rebuild(consumer)
                    continue
                self._metrics.consumed(sum(m.error() is None for m in messages))
                if self._add(messages):
                    burst.activity(time.monotonic(), consumed=True)
                self._dlq.poll()
                files_before = self.stats.files
                self._flusher.step(consumer)
                self._metrics.progress(self.stats, self._dlq.sent)
                now = time.monotonic()
                if self.stats.files != files_before:
                    # A flush is work: one longer than idle_s must not end a burst run early.
                    burst.activity(now)
                if (
                    stop_when_idle
                    and burst.idle(now)
                    and burst.should_stop(now, has_partitions=bool(consumer.assignment()))
                ):
                    break
                if max_runtime_s is not None and now - started > max_runtime_s:
                    break
            self._flush_all(consumer)
            self._metrics.progress(self.stats, self._dlq.sent)
        finally:
            gc.set_threshold(*thresholds)
            with contextlib.suppress(Exception):
                consumer.close()
            self.stats.dead_letters = self._dlq.sent
        log.info(
            "sink_stopped",
            records=self.stats.records,
            rows=self.stats.rows,
            files=self.stats.files,
            dead_letters=self.stats.dead_letters,
        )
        return self.stats

    def _check_dlq_topic(self, producer: confluent_kafka.Producer) -> None:
        """The events DLQ must exist: a dead letter to a missing topic is never acknowledged, so its
        partition would retry for ever. No answer from the broker is an outage, not a misconfiguration:
        logged, and the sink starts (its flushes wait for the broker)."""
        try:
            # Every topic, not just this one: asking for one topic by name may auto-create it.
            metadata = producer.list_topics(timeout=KAFKA_TIMEOUT_S)
        except confluent_kafka.KafkaException as exc:
            log.warning("sink_dlq_topic_unchecked", topic=self.dlq_topic, error=str(exc))
            return
        found = metadata.topics.get(self.dlq_topic)
        if found is None or found.error is not None:
            raise ConfigError(
                f"the sink's dead-letter topic {self.dlq_topic} does not exist: run `notify topics apply`"
            )

    def _flush_all(self, consumer: confluent_kafka.Consumer) -> None:
        """On the way out: everything buffered, retried for up to ``SHUTDOWN_GRACE_S``."""
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while not (self._flusher.step(consumer, final=True) and not self._flusher.unflushed()):
            if time.monotonic() > deadline:
                raise SinkError(
                    f"the sink could not write {self._flusher.unflushed()} records within"
                    f" {SHUTDOWN_GRACE_S:g}s; none of them was committed, so the next run reads them again"
                )
            time.sleep(0.05)

    def _subscribed(self) -> confluent_kafka.Consumer:
        consumer = make_consumer(self._settings, self._settings.sink_group)
        consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        return consumer

    def _rebuild(self, consumer: confluent_kafka.Consumer) -> confluent_kafka.Consumer:
        """A fatally failed consumer is replaced; everything not committed is read again."""
        self._rebuilds.spend(time.monotonic(), f"sink consumer in {self._settings.sink_group}")
        self._flusher.forget(self._flusher.known())
        with contextlib.suppress(Exception):
            consumer.close()
        log.warning("sink_consumer_rebuilt", group=self._settings.sink_group)
        return self._subscribed()

    def _add(self, messages: list[confluent_kafka.Message]) -> int:
        """Buffer what was consumed (a record that does not decode is dead-lettered); how many."""
        added = 0
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                    log.warning("consume_error", error=translate(err, "sink consume").args[0])
                continue
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            if (topic, partition) not in self._flusher.owned:
                continue  # fetched before its revocation in this same consume(): the new owner's now
            try:
                event = self._codec.decode(msg.value() or b"", EVENT)
            except DecodeError as exc:
                if self._batcher.add(topic, partition, offset, None):
                    self._dlq.send(Record.from_message(msg), Failure("decode_error", str(exc)))
                    added += 1
                continue
            added += self._batcher.add(topic, partition, offset, event)
        self.stats.records += added
        return added

    # Rebalance callbacks run inside consume(), on this thread.
    def _on_assign(
        self, _consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        self._flusher.assigned((tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(
        self, _consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        self._flusher.forget((tp.topic, tp.partition) for tp in partitions)


def _fatal(msg: confluent_kafka.Message) -> bool:
    failed = fatal_error(msg, "sink consume")
    if failed is not None:
        log.error("sink_consumer_failed", error=str(failed))
    return failed is not None

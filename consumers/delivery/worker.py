"""The channel worker: one consumer group per channel, shared by all four providers.

Reads ``<prefix>.<channel>`` and its tiered retry topics ``<prefix>.<channel>.retry.<N>s``; runs up
to ``delivery_max_in_flight`` deliveries at once; commits only each partition's contiguous completed
prefix. A retry record that is not yet due pauses its retry partition (and seeks back to it) until it
is, so waiting retries hold no memory and never delay fresh traffic; tiers keep a short retry from
waiting behind a long one.

Nothing a record holds can stop the worker: a record that does not decode or check out, and any
unexpected exception while handling one, dead-letters that record and the worker moves on. Database
and broker outages are ridden out: the delivery waits (backing off, logged once per state change)
and carries on where it was, so nothing is lost and nothing marked is sent again.

All consumer calls run on one dedicated thread (librdkafka's consumer is not for concurrent use, and
rebalance callbacks run inside ``consume``); everything else runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import confluent_kafka
import structlog

from consumers.delivery.deliverer import Adapter, Deactivate, Deliverer, WorkerStats, send_rate
from consumers.delivery.delivery_log import DeliveryLog
from consumers.delivery.message_check import check_message
from consumers.delivery.offsets import OffsetTracker
from consumers.delivery.retry_wait import counts_as_busy, due_at
from consumers.delivery.spans import delivery_span
from notify_core.burst import BurstStop
from notify_core.codec import CHANNEL_MESSAGE, default_codec
from notify_core.events import Failure
from notify_core.exceptions import DecodeError
from notify_core.fencing import RebuildBudget
from notify_core.instruments import Instruments
from notify_core.kafka_async import AsyncProducer
from notify_core.kafka_clients import consume_ready, fatal_error, make_consumer, translate
from notify_core.outage import is_outage
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names, worker_group

__all__ = ["Adapter", "Deactivate", "Worker", "WorkerStats", "send_rate", "worker_group"]

log = structlog.get_logger(__name__)
T = TypeVar("T")
COMMIT_EVERY_S = 1.0


class Worker:
    def __init__(
        self,
        settings: Settings,
        channel: Channel,
        adapter: Adapter,
        delivery_log: DeliveryLog,
        *,
        provider: str,
        deactivate: Deactivate | None = None,
        group: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        instruments: Instruments | None = None,
    ) -> None:
        self._settings, self._channel, self._adapter = settings, channel, adapter
        self._log, self._clock = delivery_log, clock
        names = topic_names(settings)
        self._topic = names.channel(channel)
        self._retry_tiers = names.retries(channel)  # topic -> tier delay, seconds
        self.group = group or worker_group(settings, channel)
        self._codec = default_codec()
        self.stats = WorkerStats()
        self._deliverer = Deliverer(
            settings,
            channel,
            adapter,
            delivery_log,
            provider=provider,
            deactivate=deactivate,
            clock=clock,
            rng=rng or random.Random(),  # noqa: S311 - jitter, not secrets
            stats=self.stats,
            instruments=instruments,
        )
        self._metrics = self._deliverer.metrics
        self.database, self.broker = self._deliverer.database, self._deliverer.broker
        self._tracker = OffsetTracker()
        self._tracker_lock = threading.Lock()  # rebalance callbacks touch it from the Kafka thread
        self._paused: dict[tuple[str, int], datetime] = {}  # retry partitions waiting for a due time
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._failure: BaseException | None = None
        self._commit_failing = False
        self._rebuilds = RebuildBudget()
        self._pruning: asyncio.Task[None] | None = None

    def stop(self, *_args: object) -> None:
        self._stopping = True

    async def run(
        self, *, stop_when_idle: bool = False, idle_s: float = 3.0, max_runtime_s: float | None = None
    ) -> WorkerStats:
        kafka = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"notify-{self._channel.value}-consumer")
        loop = asyncio.get_running_loop()

        async def on_kafka(call: Callable[[], T]) -> T:
            return await loop.run_in_executor(kafka, call)

        released = await self._deliverer.until_ok(self._log.release_own, self.database)
        if released:
            log.info("released_own_leases", count=released)
        instance = static_instance(self._settings, self.group)
        consumer = await on_kafka(functools.partial(self._subscribed, instance))
        producer = AsyncProducer(self._settings)
        started = time.monotonic()
        burst = BurstStop(idle_s, started)
        last_commit = 0.0
        last_prune = time.monotonic()  # not at start-up: a burst run in a test prunes nothing
        try:
            while not self._stopping and self._failure is None:
                room = self._settings.delivery_max_in_flight - len(self._tasks)
                await self._resume_due(consumer, on_kafka)
                if room > 0:
                    messages = await on_kafka(functools.partial(consume_ready, consumer, room, 0.1))
                    if any(_fatal(m) for m in messages):
                        consumer = await on_kafka(functools.partial(self._rebuild, consumer, instance))
                        continue
                    if messages:
                        burst.activity(time.monotonic(), consumed=True)
                        await self._dispatch(messages, consumer, producer, on_kafka)
                else:
                    await asyncio.sleep(0.005)
                now = time.monotonic()
                if self._tasks or self._retry_due_soon(idle_s):
                    burst.activity(now)
                if now - last_commit >= COMMIT_EVERY_S:
                    await self._commit(consumer, on_kafka)
                    self._metrics.flush()  # the counts tallied since, to the SDK: once a second
                    last_commit = now
                if now - last_prune >= self._settings.prune_every_s:
                    self._spawn_prune()
                    last_prune = now
                # The assignment is looked at (a hop to the Kafka thread) only once idle.
                if stop_when_idle and burst.idle(now):
                    mine = len(await on_kafka(consumer.assignment)) > 0
                    if burst.should_stop(now, has_partitions=mine):
                        break
                if max_runtime_s is not None and now - started > max_runtime_s:
                    break
            await self._drain()
            await self._commit(consumer, on_kafka)
        finally:
            for task in self._tasks:
                task.cancel()
            await self._adapter.close()
            await asyncio.to_thread(producer.close)
            await on_kafka(consumer.close)
            kafka.shutdown(wait=True)
            self._metrics.flush()
        log.info("worker_stopped", channel=self._channel.value, **self.stats.counts())
        if self._failure is not None:
            raise self._failure
        return self.stats

    # --- consuming -------------------------------------------------------------------------------
    def _subscribed(self, instance: str | None) -> confluent_kafka.Consumer:
        # Balanced per topic: every worker gets its share of fresh traffic, not only of retries.
        consumer = make_consumer(self._settings, self.group, instance_id=instance, per_topic_balance=True)
        topics = [self._topic, *self._retry_tiers]
        consumer.subscribe(topics, on_revoke=self._on_revoke, on_lost=self._on_lost)
        return consumer

    def _rebuild(self, consumer: confluent_kafka.Consumer, instance: str | None) -> confluent_kafka.Consumer:
        """On the Kafka thread: replace a fatally failed consumer (fenced by its own rejoin after an
        outage). Its partitions are treated as lost; in-flight deliveries still finish, and what was
        not committed is redelivered, where the delivery log skips what was done."""
        self._rebuilds.spend(time.monotonic(), f"{self.group} consumer {instance}")
        with self._tracker_lock:
            for topic, partition in self._tracker.partitions():
                self._tracker.forget(topic, partition)
            self._paused.clear()
        with contextlib.suppress(Exception):
            consumer.close()
        log.warning("worker_consumer_rebuilt", group=self.group, instance=instance)
        return self._subscribed(instance)

    async def _dispatch(
        self,
        messages: list[confluent_kafka.Message],
        consumer: confluent_kafka.Consumer,
        producer: AsyncProducer,
        on_kafka: Callable[[Callable[[], Any]], Awaitable[Any]],
    ) -> None:
        now = self._clock()
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                    log.warning("consume_error", error=translate(err, "worker consume").args[0])
                continue
            record = Record.from_message(msg)
            where = (record.topic, record.partition)
            if where in self._paused:
                continue  # fetched before the pause; the seek brings it back when due
            message, failure = self._read(record)
            tier = self._retry_tiers.get(record.topic)
            if tier is not None and message is not None:
                due = due_at(message.get("not_before"), record.timestamp_ms, tier, now)
                if due > now:
                    self._paused[where] = due
                    tp = confluent_kafka.TopicPartition(record.topic, record.partition, record.offset)
                    await on_kafka(functools.partial(_pause_at, consumer, tp))
                    continue
            with self._tracker_lock:
                self._tracker.start(record.topic, record.partition, record.offset)
            self.stats.consumed += 1
            # Counted once taken on: a record fetched before its partition was paused comes again.
            self._metrics.consumed((record.topic,))
            task = asyncio.create_task(self._run_one(record, message, failure, producer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _read(self, record: Record) -> tuple[dict[str, Any] | None, Failure | None]:
        """The decoded message, or why it cannot be delivered by this worker."""
        try:
            message: dict[str, Any] = self._codec.decode(record.value or b"", CHANNEL_MESSAGE)
        except DecodeError as exc:
            return None, Failure("decode_error", str(exc))
        failure = check_message(message, self._channel)
        return (message, None) if failure is None else (None, failure)

    async def _run_one(
        self, record: Record, message: dict[str, Any] | None, failure: Failure | None, producer: AsyncProducer
    ) -> None:
        try:
            with delivery_span(record, message, group=self.group):
                await self._deliverer.deliver(record, message, failure, producer)
        except Exception as exc:  # fatal (fenced, misconfigured): stop, leave the record uncommitted
            log.error("worker_stopping", error=f"{type(exc).__name__}: {exc}"[:500])
            self._failure = self._failure or exc
            return
        with self._tracker_lock:
            self._tracker.finish(record.topic, record.partition, record.offset)
        self.stats.last_done_at = time.monotonic()

    def _spawn_prune(self) -> None:
        if self._pruning is not None and not self._pruning.done():
            return  # the last round is still running
        self._pruning = asyncio.create_task(self._prune())

    async def _prune(self) -> None:
        """Finished delivery-log rows past retention, a bounded batch a round; an outage skips it."""
        cutoff = self._clock() - timedelta(seconds=self._settings.delivery_log_retention_s)
        try:
            removed = await self._log.prune(self._channel.value, cutoff, self._settings.prune_batch)
        except Exception as exc:
            if not is_outage(exc):
                log.error("delivery_log_prune_failed", error=str(exc)[:300])
            return
        if removed:
            log.info("delivery_log_pruned", channel=self._channel.value, rows=removed)

    def _retry_due_soon(self, idle_s: float) -> bool:
        now = self._clock()
        return any(counts_as_busy(due, now, idle_s) for due in self._paused.values())

    async def _resume_due(
        self, consumer: confluent_kafka.Consumer, on_kafka: Callable[[Callable[[], Any]], Awaitable[Any]]
    ) -> None:
        now = self._clock()
        due = [where for where, at in self._paused.items() if at <= now]
        if due:
            for where in due:
                del self._paused[where]
            tps = [confluent_kafka.TopicPartition(t, p) for t, p in due]
            await on_kafka(lambda: consumer.resume(tps))

    def _on_revoke(
        self, _consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        # Called on the Kafka thread inside consume(): commit what is done, then let the partitions go.
        # Everything ready is committed, kept partitions too: committable() counts it all as committed
        # from here on, so leaving the kept ones out would drop their progress until they move again.
        with self._tracker_lock:
            offsets = [
                confluent_kafka.TopicPartition(t, p, o) for (t, p), o in self._tracker.committable().items()
            ]
            for tp in partitions:
                self._tracker.forget(tp.topic, tp.partition)
                self._paused.pop((tp.topic, tp.partition), None)
        if offsets:
            with contextlib.suppress(confluent_kafka.KafkaException):
                _consumer.commit(offsets=offsets, asynchronous=False)

    def _on_lost(
        self, _consumer: confluent_kafka.Consumer, partitions: list[confluent_kafka.TopicPartition]
    ) -> None:
        with self._tracker_lock:
            for tp in partitions:
                self._tracker.forget(tp.topic, tp.partition)
                self._paused.pop((tp.topic, tp.partition), None)

    async def _commit(
        self, consumer: confluent_kafka.Consumer, on_kafka: Callable[[Callable[[], Any]], Awaitable[Any]]
    ) -> None:
        with self._tracker_lock:
            ready = self._tracker.committable()
        if not ready:
            return
        offsets = [confluent_kafka.TopicPartition(t, p, o) for (t, p), o in ready.items()]
        try:
            await on_kafka(lambda: consumer.commit(offsets=offsets, asynchronous=False))
        except confluent_kafka.KafkaException as exc:
            # Not fatal: the records are redelivered and the delivery log skips what was done. Logged
            # once per failing spell, not once a second.
            if not self._commit_failing:
                log.warning("commit_failed", error=str(exc.args[0]))
            self._commit_failing = True
            return
        if self._commit_failing:
            log.warning("commit_recovered")
        self._commit_failing = False

    async def _drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(
                set(self._tasks), timeout=self._settings.delivery_shutdown_grace_s
            )
            if pending:
                log.warning("shutdown_left_in_flight", count=len(pending))


def _fatal(msg: confluent_kafka.Message) -> bool:
    failed = fatal_error(msg, "worker consume")
    if failed is not None:
        log.error("worker_consumer_failed", error=str(failed))
    return failed is not None


def static_instance(settings: Settings, group: str) -> str | None:
    """The worker's static group membership (KIP-345), when it has an identity: set explicitly, or
    an instance slot claimed by ``notify worker run``. Without one (an in-process worker in a test
    or the demo, on the default id "0") it is a dynamic member: two of those would fence each other
    as static members, and a restart waits only for the 10 s session timeout."""
    if "worker_instance_id" not in settings.model_fields_set:
        return None
    return f"{group}-{settings.worker_instance_id}"


def _pause_at(consumer: confluent_kafka.Consumer, tp: confluent_kafka.TopicPartition) -> None:
    consumer.pause([tp])
    consumer.seek(tp)

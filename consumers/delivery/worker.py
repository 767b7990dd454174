"""The channel worker: one consumer group per channel, shared by all four providers.

Reads ``<prefix>.<channel>`` and ``<prefix>.<channel>.retry``; runs up to ``delivery_max_in_flight``
deliveries at once; commits only each partition's contiguous completed prefix. A retry record that
is not yet due pauses its retry partition (and seeks back to it) until it is, so waiting retries hold
no memory and never delay fresh traffic, which arrives on the other topic.

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
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import confluent_kafka
import structlog

from consumers.delivery.backoff import BackoffPolicy
from consumers.delivery.decide import Action, Step, next_step
from consumers.delivery.delivery_log import ClaimResult, DeliveryLog
from consumers.delivery.offsets import OffsetTracker
from consumers.delivery.outcome import Outcome
from consumers.delivery.rate_limit import TokenBucket
from notify_core.burst import BurstStop
from notify_core.codec import CHANNEL_MESSAGE, CONTENT_TYPE_HEADERS, DEAD_LETTER, EVENT, default_codec
from notify_core.events import Failure, dead_letter, event
from notify_core.exceptions import DecodeError, NotifyError
from notify_core.kafka_async import AsyncProducer
from notify_core.kafka_clients import make_consumer, translate
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.stats import LATENCY_SAMPLES
from notify_core.topics import Channel, topic_names

log = structlog.get_logger(__name__)
T = TypeVar("T")
COMMIT_EVERY_S = 1.0


def worker_group(settings: Settings, channel: Channel) -> str:
    """The channel's consumer group, ``<NOTIFY_WORKER_GROUP_PREFIX>-<channel>``."""
    return f"{settings.worker_group_prefix}-{channel.value}"


class Adapter(Protocol):
    """What a provider adapter offers the worker: one send, and a close."""

    async def send(self, message: Mapping[str, Any]) -> Outcome: ...

    async def close(self) -> None: ...


# Deactivates the device or contact a ``target_ref`` names ('device:<id>' / 'contact:<id>').
Deactivate = Callable[[Channel, str, str], Awaitable[None]]


@dataclass
class WorkerStats:
    consumed: int = 0
    sent: int = 0
    retried: int = 0
    dead_lettered: int = 0
    skipped_done: int = 0  # redelivered records whose delivery had already ended
    deferred_busy: int = 0  # another live worker held the lease
    deactivated: int = 0
    # The latest provider-call latencies: bounded, a worker runs for weeks.
    send_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    first_send_at: float | None = None
    last_done_at: float | None = None

    def counts(self) -> dict[str, int]:
        return {
            "consumed": self.consumed,
            "sent": self.sent,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "skipped_done": self.skipped_done,
            "deferred_busy": self.deferred_busy,
            "deactivated": self.deactivated,
        }


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
    ) -> None:
        self._settings, self._channel, self._adapter = settings, channel, adapter
        self._log, self._provider, self._deactivate = delivery_log, provider, deactivate
        self._clock, self._rng = clock, rng or random.Random()  # noqa: S311 - jitter, not secrets
        names = topic_names(settings)
        self._topic, self._retry_topic, self._dlq_topic = (
            names.channel(channel),
            names.retry(channel),
            names.dlq(channel),
        )
        self._events_topic = names.events
        self.group = group or worker_group(settings, channel)
        self._stage = f"worker.{channel.value}"
        self._codec = default_codec()
        self._policy = BackoffPolicy(
            base_s=settings.delivery_backoff_base_s,
            max_s=settings.delivery_backoff_max_s,
            max_attempts=settings.delivery_max_attempts,
        )
        self._bucket = TokenBucket(send_rate(settings, channel))
        self._tracker = OffsetTracker()
        self._tracker_lock = threading.Lock()  # rebalance callbacks touch it from the Kafka thread
        self._paused: dict[tuple[str, int], datetime] = {}  # retry partitions waiting for a due time
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._failure: BaseException | None = None
        self.stats = WorkerStats()

    def stop(self, *_args: object) -> None:
        self._stopping = True

    async def run(
        self, *, stop_when_idle: bool = False, idle_s: float = 3.0, max_runtime_s: float | None = None
    ) -> WorkerStats:
        kafka = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"notify-{self._channel.value}-consumer")
        loop = asyncio.get_running_loop()

        async def on_kafka(call: Callable[[], T]) -> T:
            return await loop.run_in_executor(kafka, call)

        released = await self._log.release_own()
        if released:
            log.info("released_own_leases", count=released)
        consumer = await on_kafka(lambda: make_consumer(self._settings, self.group))
        producer = AsyncProducer(self._settings)
        started = time.monotonic()
        burst = BurstStop(idle_s, started)
        last_commit = 0.0
        try:
            await on_kafka(
                lambda: consumer.subscribe(
                    [self._topic, self._retry_topic], on_revoke=self._on_revoke, on_lost=self._on_lost
                )
            )
            while not self._stopping and self._failure is None:
                room = self._settings.delivery_max_in_flight - len(self._tasks)
                await self._resume_due(consumer, on_kafka)
                if room > 0:
                    messages = await on_kafka(functools.partial(consumer.consume, room, 0.1))
                    if messages:
                        burst.activity(time.monotonic(), consumed=True)
                        await self._dispatch(messages, consumer, producer, on_kafka)
                else:
                    await asyncio.sleep(0.005)
                now = time.monotonic()
                if self._tasks or self._paused:
                    burst.activity(now)
                if now - last_commit >= COMMIT_EVERY_S:
                    await self._commit(consumer, on_kafka)
                    last_commit = now
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
        log.info("worker_stopped", channel=self._channel.value, **self.stats.counts())
        if self._failure is not None:
            raise self._failure
        return self.stats

    # --- consuming -------------------------------------------------------------------------------
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
            try:
                message: dict[str, Any] | None = self._codec.decode(record.value or b"", CHANNEL_MESSAGE)
                failure = None
            except DecodeError as exc:
                message, failure = None, Failure("decode_error", str(exc))
            not_before = message.get("not_before") if message else None
            if record.topic == self._retry_topic and not_before is not None and not_before > now:
                self._paused[where] = not_before
                tp = confluent_kafka.TopicPartition(record.topic, record.partition, record.offset)
                await on_kafka(functools.partial(_pause_at, consumer, tp))
                continue
            with self._tracker_lock:
                self._tracker.start(record.topic, record.partition, record.offset)
            self.stats.consumed += 1
            task = asyncio.create_task(self._deliver(record, message, failure, producer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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
            # Not fatal: the records are redelivered and the delivery log skips what was done.
            log.warning("commit_failed", error=str(exc.args[0]))

    async def _drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(
                set(self._tasks), timeout=self._settings.delivery_shutdown_grace_s
            )
            if pending:
                log.warning("shutdown_left_in_flight", count=len(pending))

    # --- one delivery ----------------------------------------------------------------------------
    async def _deliver(
        self,
        record: Record,
        message: dict[str, Any] | None,
        failure: Failure | None,
        producer: AsyncProducer,
    ) -> None:
        try:
            if message is None:
                assert failure is not None
                await self._dead_letter(
                    producer,
                    record,
                    None,
                    Step(Action.DEAD_LETTER, failure.error_type, failure.message),
                    0,
                    None,
                )
            else:
                await self._attempt(record, message, producer)
        except (NotifyError, confluent_kafka.KafkaException, TimeoutError) as exc:
            # Database or broker trouble: this record must not be committed. Stop the worker; the
            # record is redelivered after restart and the delivery log decides what is left to do.
            log.error("delivery_aborted", channel=self._channel.value, error=str(exc))
            self._failure = self._failure or exc
            return
        with self._tracker_lock:
            self._tracker.finish(record.topic, record.partition, record.offset)
        self.stats.last_done_at = time.monotonic()

    async def _attempt(self, record: Record, message: dict[str, Any], producer: AsyncProducer) -> None:
        now = self._clock()
        expires_at: datetime | None = message.get("expires_at")
        if expires_at is not None and expires_at <= now:
            step = Step(Action.DEAD_LETTER, "expired", "expired before it could be sent")
            await self._dead_letter(producer, record, message, step, int(message["attempt"]), None)
            return
        claim = await self._log.claim(
            message["delivery_id"], message["notification_id"], self._channel.value, now
        )
        if claim.result is ClaimResult.DONE:
            self.stats.skipped_done += 1
            return
        if claim.result is ClaimResult.BUSY:
            self.stats.deferred_busy += 1
            # Usually a second copy racing the first on this very worker: look again soon, and at the
            # latest when the other lease lapses.
            soon = now + timedelta(seconds=2 * self._settings.delivery_backoff_base_s)
            copy = {**message, "not_before": min(claim.busy_until or soon, soon)}
            await producer.produce(
                self._retry_topic, self._codec.encode(CHANNEL_MESSAGE, copy), record.key, CONTENT_TYPE_HEADERS
            )
            return

        await self._bucket.acquire()
        began = time.perf_counter()
        self.stats.first_send_at = self.stats.first_send_at or time.monotonic()
        outcome = await self._adapter.send(message)
        latency = time.perf_counter() - began
        self.stats.send_seconds.append(latency)
        now = self._clock()
        step = next_step(
            outcome,
            attempts=claim.attempts,
            now=now,
            expires_at=expires_at,
            policy=self._policy,
            rng=self._rng,
        )
        common = {"attempt": claim.attempts, "latency_ms": round(latency * 1000, 3)}
        if step.action is Action.SENT:
            await self._log.mark_sent(message["delivery_id"], outcome.provider_message_id, now)
            self.stats.sent += 1
            await self._event(
                producer, message, "SENT", now, provider_message_id=outcome.provider_message_id, **common
            )
        elif step.action is Action.RETRY:
            await self._log.mark_failed(message["delivery_id"], "retrying", step.message, now)
            copy = {**message, "attempt": claim.attempts, "not_before": step.not_before}
            await producer.produce(
                self._retry_topic, self._codec.encode(CHANNEL_MESSAGE, copy), record.key, CONTENT_TYPE_HEADERS
            )
            self.stats.retried += 1
            await self._event(producer, message, "FAILED_RETRYING", now, reason=step.error_type, **common)
        else:
            await self._log.mark_failed(message["delivery_id"], "dead_lettered", step.message, now)
            if outcome.status == "permanent":
                await self._event(
                    producer, message, "FAILED_PERMANENT", now, reason=step.error_type, **common
                )
            await self._dead_letter(
                producer, record, message, step, claim.attempts, claim.first_failed_at or now
            )
            if step.deactivate and self._deactivate is not None:
                await self._deactivate(self._channel, str(message["target_ref"]), step.error_type)
                self.stats.deactivated += 1
                await self._event(
                    producer, message, "TARGET_DEACTIVATED", now, reason=step.error_type, **common
                )

    async def _dead_letter(
        self,
        producer: AsyncProducer,
        record: Record,
        message: dict[str, Any] | None,
        step: Step,
        attempts: int,
        first_failed_at: datetime | None,
    ) -> None:
        now = self._clock()
        letter = dead_letter(
            record,
            Failure(step.error_type, step.message),
            stage=self._stage,
            failed_at=now,
            attempts=attempts,
            first_failed_at=first_failed_at,
        )
        await producer.produce(
            self._dlq_topic, self._codec.encode(DEAD_LETTER, letter), record.key, CONTENT_TYPE_HEADERS
        )
        self.stats.dead_lettered += 1
        if message is not None:
            await self._event(
                producer, message, "DEAD_LETTERED", now, reason=step.error_type, attempt=attempts
            )

    async def _event(
        self, producer: AsyncProducer, message: Mapping[str, Any], kind: str, now: datetime, **fields: Any
    ) -> None:
        record = event(
            kind,
            occurred_at=now,
            notification_id=message["notification_id"],
            user_id=message["user_id"],
            service=message["service"],
            delivery_id=message["delivery_id"],
            channel=self._channel,
            category=message["category"],
            provider=self._provider,
            **fields,
        )
        key = str(message["notification_id"]).encode()
        await producer.produce(
            self._events_topic, self._codec.encode(EVENT, record), key, CONTENT_TYPE_HEADERS
        )


def _pause_at(consumer: confluent_kafka.Consumer, tp: confluent_kafka.TopicPartition) -> None:
    consumer.pause([tp])
    consumer.seek(tp)


def send_rate(settings: Settings, channel: Channel) -> float:
    """Provider calls per second for one worker process of ``channel``; 0 means unlimited.

    SMS always has a limit: SNS counts messages per second per account, and a throttled answer costs
    a whole retry cycle, so pacing on our side is cheaper than being told.
    """
    return {
        Channel.IOS: settings.rate_limit_ios,
        Channel.ANDROID: settings.rate_limit_android,
        Channel.SMS: settings.sms_max_per_second,
        Channel.EMAIL: settings.rate_limit_email,
    }[channel]

"""One channel message, from claim to mark: what a worker does with each record it consumes.

The order of effects is the safety argument. The pace is taken before the lease, so a queue
waiting on a slow pace never outlives it. After the provider call, every Kafka record carrying
the outcome (retry copy, dead letter, event) is acknowledged before the delivery log records the
final state: the log is the last word, never the first, so a crash in between repeats work rather
than losing it. Database and broker calls are retried through outages (``notify_core.outage``);
any other exception dead-letters the record as ``internal_error`` and the worker moves on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog

from consumers.delivery.backoff import BackoffPolicy
from consumers.delivery.decide import Action, Step, next_step
from consumers.delivery.delivery_log import Claim, ClaimResult, DeliveryLog
from consumers.delivery.outcome import Outcome
from consumers.delivery.rate_limit import TokenBucket
from consumers.delivery.retry_wait import tier_for
from notify_core.codec import CHANNEL_MESSAGE, CONTENT_TYPE_HEADERS, DEAD_LETTER, EVENT, default_codec
from notify_core.events import Failure, dead_letter, event
from notify_core.kafka_async import AsyncProducer
from notify_core.outage import Outage, is_outage
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.stats import LATENCY_SAMPLES
from notify_core.topics import Channel, topic_names

log = structlog.get_logger(__name__)
T = TypeVar("T")


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
    internal_errors: int = 0  # records dead-lettered because handling them raised
    lease_lost: int = 0  # marks refused: the lease had lapsed and another worker held the claim
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
            "internal_errors": self.internal_errors,
            "lease_lost": self.lease_lost,
        }


class Deliverer:
    """Handles one record at a time (many concurrently); shares its stats with the worker loop."""

    def __init__(
        self,
        settings: Settings,
        channel: Channel,
        adapter: Adapter,
        delivery_log: DeliveryLog,
        *,
        provider: str,
        deactivate: Deactivate | None,
        clock: Callable[[], datetime],
        rng: random.Random,
        stats: WorkerStats,
    ) -> None:
        self._settings, self._channel, self._adapter = settings, channel, adapter
        self._log, self._provider, self._deactivate = delivery_log, provider, deactivate
        self._clock, self._rng, self.stats = clock, rng, stats
        self._names = topic_names(settings)
        self._dlq_topic, self._events_topic = self._names.dlq(channel), self._names.events
        self._stage = f"worker.{channel.value}"
        self._codec = default_codec()
        self._policy = BackoffPolicy(
            base_s=settings.delivery_backoff_base_s,
            max_s=settings.delivery_backoff_max_s,
            max_attempts=settings.delivery_max_attempts,
        )
        self._bucket = TokenBucket(send_rate(settings, channel))
        self.database = Outage("database")
        self.broker = Outage("broker")

    async def deliver(
        self,
        record: Record,
        message: dict[str, Any] | None,
        failure: Failure | None,
        producer: AsyncProducer,
    ) -> None:
        try:
            if message is None:
                assert failure is not None
                step = Step(Action.DEAD_LETTER, failure.error_type, failure.message)
                await self._dead_letter(producer, record, None, step, 0, None)
            else:
                await self._attempt(record, message, producer)
        except asyncio.CancelledError:
            raise  # shutdown past its grace: not committed, so redelivered after restart
        except Exception as exc:  # the total catch: one record never stops the worker
            await self._internal_error(record, producer, exc)

    async def _internal_error(self, record: Record, producer: AsyncProducer, exc: Exception) -> None:
        self.stats.internal_errors += 1
        where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        log.error("delivery_internal_error", error_type=type(exc).__name__, error=str(exc)[:500], **where)
        step = Step(Action.DEAD_LETTER, "internal_error", f"{type(exc).__name__}: {exc}")
        try:
            await self._dead_letter(producer, record, None, step, 0, None)
        except Exception as again:  # not even a dead letter fits: say so, move on
            log.error("dead_letter_failed", error=str(again)[:500], **where)

    async def until_ok(self, call: Callable[[], Awaitable[T]], outage: Outage) -> T:
        """``call()`` until it succeeds, waiting out outages of ``outage``'s dependency.

        Record errors (bad data, a record too large) are raised at once for the total catch.
        """
        while True:
            try:
                result = await call()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                await asyncio.sleep(outage.failed(exc))
                continue
            outage.ok()
            return result

    async def _produce(self, producer: AsyncProducer, topic: str, value: bytes, record: Record) -> None:
        """Produce and wait for the broker's ack, riding out broker outages (same bytes every try)."""
        headers = _carried_headers(record)
        await self.until_ok(lambda: producer.produce(topic, value, record.key, headers), self.broker)

    async def _attempt(self, record: Record, message: dict[str, Any], producer: AsyncProducer) -> None:
        now = self._clock()
        expires_at: datetime | None = message.get("expires_at")
        if expires_at is not None and expires_at <= now:
            step = Step(Action.DEAD_LETTER, "expired", "expired before it could be sent")
            await self._dead_letter(producer, record, message, step, int(message["attempt"]), None)
            return
        # The pace is taken before the lease: a queue waiting on a slow pace never outlives its lease.
        await self._bucket.acquire()
        claim = await self.until_ok(
            lambda: self._log.claim(
                message["delivery_id"], message["notification_id"], self._channel.value, self._clock()
            ),
            self.database,
        )
        if claim.result is ClaimResult.DONE:
            self.stats.skipped_done += 1
            return
        if claim.result is ClaimResult.BUSY:
            await self._busy(record, message, claim, producer)
            return

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
        await self._settle(record, message, producer, claim, outcome, step, latency)

    async def _busy(
        self, record: Record, message: dict[str, Any], claim: Claim, producer: AsyncProducer
    ) -> None:
        self.stats.deferred_busy += 1
        # Usually a second copy racing the first on this very worker: look again soon, and at the
        # latest when the other lease lapses.
        now = self._clock()
        soon = now + timedelta(seconds=2 * self._settings.delivery_backoff_base_s)
        not_before = min(claim.busy_until or soon, soon)
        copy = {**message, "not_before": not_before}
        topic = self._names.retry(self._channel, tier_for(not_before, now))
        await self._produce(producer, topic, self._codec.encode(CHANNEL_MESSAGE, copy), record)

    async def _settle(
        self,
        record: Record,
        message: dict[str, Any],
        producer: AsyncProducer,
        claim: Claim,
        outcome: Outcome,
        step: Step,
        latency: float,
    ) -> None:
        """After the call: every Kafka record that carries the outcome first, the log's mark last."""
        now = self._clock()
        delivery_id = message["delivery_id"]
        common = {"attempt": claim.attempts, "latency_ms": round(latency * 1000, 3)}
        if step.action is Action.SENT:
            await self._event(
                producer,
                record,
                message,
                "SENT",
                now,
                provider_message_id=outcome.provider_message_id,
                **common,
            )
            marked = await self.until_ok(
                lambda: self._log.mark_sent(delivery_id, outcome.provider_message_id, now), self.database
            )
            self._lease_check(marked, record, delivery_id)
            self.stats.sent += 1
        elif step.action is Action.RETRY:
            assert step.not_before is not None
            copy = {**message, "attempt": claim.attempts, "not_before": step.not_before}
            topic = self._names.retry(self._channel, tier_for(step.not_before, now))
            await self._produce(producer, topic, self._codec.encode(CHANNEL_MESSAGE, copy), record)
            await self._event(
                producer, record, message, "FAILED_RETRYING", now, reason=step.error_type, **common
            )
            marked = await self.until_ok(
                lambda: self._log.mark_failed(delivery_id, "retrying", step.message, now), self.database
            )
            self._lease_check(marked, record, delivery_id)
            self.stats.retried += 1
        else:
            if outcome.status == "permanent":
                await self._event(
                    producer, record, message, "FAILED_PERMANENT", now, reason=step.error_type, **common
                )
            await self._dead_letter(
                producer, record, message, step, claim.attempts, claim.first_failed_at or now
            )
            if step.deactivate and self._deactivate is not None:
                deactivate = self._deactivate
                await self.until_ok(
                    lambda: deactivate(self._channel, str(message["target_ref"]), step.error_type),
                    self.database,
                )
                self.stats.deactivated += 1
                await self._event(
                    producer, record, message, "TARGET_DEACTIVATED", now, reason=step.error_type, **common
                )
            marked = await self.until_ok(
                lambda: self._log.mark_failed(delivery_id, "dead_lettered", step.message, now), self.database
            )
            self._lease_check(marked, record, delivery_id)

    def _lease_check(self, marked: bool, record: Record, delivery_id: str) -> None:
        if marked:
            return
        # Our lease lapsed and another worker claimed the delivery: its row is its own now.
        self.stats.lease_lost += 1
        log.warning(
            "delivery_lease_lost",
            delivery_id=delivery_id,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
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
        # The letter's own (bounded) key, and no copy of the original headers: those are inside the
        # letter, and a huge key or header must not make the letter itself too large to produce.
        value = self._codec.encode(DEAD_LETTER, letter)
        await self.until_ok(
            lambda: producer.produce(self._dlq_topic, value, letter["key"], CONTENT_TYPE_HEADERS), self.broker
        )
        self.stats.dead_lettered += 1
        if message is not None:
            await self._event(
                producer, record, message, "DEAD_LETTERED", now, reason=step.error_type, attempt=attempts
            )

    async def _event(
        self,
        producer: AsyncProducer,
        record: Record,
        message: Mapping[str, Any],
        kind: str,
        now: datetime,
        **fields: Any,
    ) -> None:
        built = event(
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
        value = self._codec.encode(EVENT, built)  # encoded once: a retried produce keeps its event_id
        key = str(message["notification_id"]).encode()
        headers = _carried_headers(record)
        await self.until_ok(lambda: producer.produce(self._events_topic, value, key, headers), self.broker)


def _carried_headers(record: Record) -> list[tuple[str, str | bytes | None]]:
    """The headers a record's offspring carry: ours, plus every original one (``traceparent``...)."""
    carried: list[tuple[str, str | bytes | None]] = list(CONTENT_TYPE_HEADERS)
    carried += [(k, v) for k, v in record.headers if k != "content-type"]
    return carried


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

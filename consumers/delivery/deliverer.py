"""One channel message, from claim to mark: what a worker does with each record it consumes.

The order of effects is the safety argument, and it is decided by the pure plan functions of
``effects.py`` (see its docstring for the rule); this module only runs the effects they return, in
order, each as one awaited call. Database and broker calls are retried through outages
(``notify_core.outage``); any other exception dead-letters the record as ``internal_error`` and the
worker moves on.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog

from consumers.delivery import effects as fx
from consumers.delivery.backoff import BackoffPolicy
from consumers.delivery.decide import Action, Step, next_step
from consumers.delivery.delivery_log import Claim, ClaimResult, DeliveryLog
from consumers.delivery.metrics import FAILED, SKIPPED, DeliveryMetrics
from consumers.delivery.outcome import Outcome
from consumers.delivery.rate_limit import TokenBucket
from consumers.delivery.retry_wait import tier_for
from consumers.delivery.spans import note_attempt
from notify_core.codec import CHANNEL_MESSAGE, CONTENT_TYPE_HEADERS, DEAD_LETTER, EVENT, default_codec
from notify_core.events import Failure, dead_letter, event
from notify_core.instruments import Instruments
from notify_core.kafka_async import AsyncProducer, Headers
from notify_core.outage import Outage, is_fatal, is_outage
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.stats import LATENCY_SAMPLES
from notify_core.topics import Channel, topic_names
from notify_core.tracing import trace_headers, without_trace_headers

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
        instruments: Instruments | None = None,
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
        self.metrics = DeliveryMetrics(instruments or Instruments.disabled(), self._names, channel, provider)
        self.database = Outage("database")
        # Deliveries this process is working on: a second copy (redelivered after a rebalance while
        # the first waits out an outage past its lease) must not claim the lease again from here.
        self._in_flight: set[str] = set()
        self.broker = Outage("broker")

    async def deliver(
        self,
        record: Record,
        message: dict[str, Any] | None,
        failure: Failure | None,
        producer: AsyncProducer,
    ) -> None:
        job = _Job(record, message, producer)
        try:
            if message is None:
                assert failure is not None
                job.step = Step(Action.DEAD_LETTER, failure.error_type, failure.message)
                await self._run(job, fx.on_arrival(readable=False, expired=False))
                return
            expires_at: datetime | None = message.get("expires_at")
            expired = expires_at is not None and expires_at <= self._clock()
            if expired:
                job.step = Step(Action.DEAD_LETTER, "expired", "expired before it could be sent")
                job.attempts = int(message["attempt"])
            await self._run(job, fx.on_arrival(readable=True, expired=expired))
        except asyncio.CancelledError:
            raise  # shutdown past its grace: not committed, so redelivered after restart
        except Exception as exc:  # the total catch: one record never stops the worker
            if is_fatal(exc):
                raise  # fenced or misconfigured: the worker stops, the record stays uncommitted
            await self._internal_error(record, producer, exc)
        finally:
            if job.holds is not None:
                self._in_flight.discard(job.holds)

    async def _internal_error(self, record: Record, producer: AsyncProducer, exc: Exception) -> None:
        self.stats.internal_errors += 1
        where = _where(record)
        log.error("delivery_internal_error", error_type=type(exc).__name__, error=str(exc)[:500], **where)
        job = _Job(record, None, producer)  # as received: whatever failed may be in the message
        job.step = Step(Action.DEAD_LETTER, "internal_error", f"{type(exc).__name__}: {exc}")
        try:
            await self._run(job, fx.on_internal_error())
        except Exception as again:  # not even a dead letter fits: say so, move on
            log.error("dead_letter_failed", error=str(again)[:500], **where)
            self.metrics.ended(FAILED)

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

    # --- the interpreter: effects.py decides the order, this only runs it -------------------------
    async def _run(self, job: _Job, plan: fx.Plan) -> None:
        """Run ``plan`` in order; a ``Claim`` or a ``Send`` answers with the stage that follows it."""
        queue = deque(plan)
        while queue:
            effect = queue.popleft()
            queue.extend(await self._do(job, effect))
            assert isinstance(effect, fx.Commit) == (not queue), "a plan ends with its Commit, only there"

    async def _do(self, job: _Job, effect: fx.Effect) -> fx.Plan:
        match effect:
            case fx.Pace():
                self.metrics.paced(await self._bucket.acquire())
            case fx.Claim():
                message = _need(job.message)
                ids = message["delivery_id"], message["notification_id"], self._channel.value
                if ids[0] in self._in_flight:
                    job.claim = Claim(ClaimResult.BUSY)
                    return fx.on_claim(job.claim.result)
                job.claim = await self.until_ok(lambda: self._log.claim(*ids, self._clock()), self.database)
                if job.claim.result is ClaimResult.CLAIMED:
                    self._in_flight.add(ids[0])
                    job.holds = ids[0]
                return fx.on_claim(job.claim.result)
            case fx.Skip():
                self.stats.skipped_done += 1
                self.metrics.ended(SKIPPED)
            case fx.Send():
                outcome, step = await self._send(job)
                return fx.after_call(step, outcome.status, can_deactivate=self._deactivate is not None)
            case fx.Produce(kind=fx.Kind.RETRY_COPY, busy=busy):
                await self._retry_copy(job, busy)
            case fx.Produce(kind=fx.Kind.DEAD_LETTER):
                await self._dead_letter(job)
            case fx.Produce(kind=fx.Kind.EVENT, event=kind):
                await self._event(job, _need(kind))
            case fx.Deactivate():
                deactivate = _need(self._deactivate)
                ref, reason = str(_need(job.message)["target_ref"]), _need(job.step).error_type
                await self.until_ok(lambda: deactivate(self._channel, ref, reason), self.database)
                self.stats.deactivated += 1
            case fx.Mark(status=status):
                await self._mark(job, status)
            case fx.Commit():
                # The offset itself is finished by Worker._run_one once deliver() returns: the tracker
                # and its lock are the worker's, and a delivery cancelled at shutdown never gets that
                # far, so it is redelivered. Commit is last (checked in _run): returning is that moment.
                pass
        return ()

    async def _send(self, job: _Job) -> tuple[Outcome, Step]:
        message, claim = _need(job.message), _need(job.claim)
        began = time.perf_counter()
        self.stats.first_send_at = self.stats.first_send_at or time.monotonic()
        with self.metrics.call() as call:
            outcome = job.outcome = call.outcome = await self._adapter.send(message)
        job.latency = time.perf_counter() - began
        self.stats.send_seconds.append(job.latency)
        step = job.step = next_step(
            outcome,
            attempts=claim.attempts,
            now=self._clock(),
            expires_at=message.get("expires_at"),
            policy=self._policy,
            rng=self._rng,
        )
        now = job.now = self._clock()  # what every record and the mark of this outcome carry
        job.attempts, job.first_failed_at = claim.attempts, claim.first_failed_at or now
        note_attempt(claim.attempts, outcome, step)
        return outcome, step

    async def _mark(self, job: _Job, status: fx.MarkStatus) -> None:
        delivery_id, now = _need(job.message)["delivery_id"], _need(job.now)
        if status is fx.MarkStatus.SENT:
            pmid = _need(job.outcome).provider_message_id
            call = functools.partial(self._log.mark_sent, delivery_id, pmid, now)
        else:
            error = _need(job.step).message
            call = functools.partial(self._log.mark_failed, delivery_id, status.value, error, now)
        marked = await self.until_ok(call, self.database)
        self.stats.sent += status is fx.MarkStatus.SENT
        self.stats.retried += status is fx.MarkStatus.RETRYING
        if status is fx.MarkStatus.SENT:
            self.metrics.delivered(_need(job.message).get("requested_at"), now)
        elif status is fx.MarkStatus.RETRYING:
            self.metrics.retried(_need(job.step).error_type)
        if not marked:
            # Our lease lapsed and another worker claimed the delivery: its row is its own now.
            self.stats.lease_lost += 1
            log.warning("delivery_lease_lost", delivery_id=delivery_id, **_where(job.record))

    async def _produce(
        self, job: _Job, topic: str, value: bytes, key: bytes | None, headers: Headers
    ) -> None:
        """Produce and wait for the broker's ack, riding out broker outages (same bytes every try)."""
        await self.until_ok(lambda: job.producer.produce(topic, value, key, headers), self.broker)
        self.metrics.produced(topic)

    async def _retry_copy(self, job: _Job, busy: bool) -> None:
        message = _need(job.message)
        if busy:
            self.stats.deferred_busy += 1
            # Usually a second copy racing the first on this very worker: look again soon, and at the
            # latest when the other lease lapses.
            now = self._clock()
            soon = now + timedelta(seconds=2 * self._settings.delivery_backoff_base_s)
            not_before = min(_need(job.claim).busy_until or soon, soon)
            copy = {**message, "not_before": not_before}
        else:
            now, not_before = _need(job.now), _need(_need(job.step).not_before)
            copy = {**message, "attempt": job.attempts, "not_before": not_before}
        topic = self._names.retry(self._channel, tier_for(not_before, now))
        value = self._codec.encode(CHANNEL_MESSAGE, copy)
        await self._produce(job, topic, value, job.record.key, _carried_headers(job.record))

    async def _dead_letter(self, job: _Job) -> None:
        now, step = self._clock(), _need(job.step)
        job.letter_at = now
        letter = dead_letter(
            job.record,
            Failure(step.error_type, step.message),
            stage=self._stage,
            failed_at=now,
            attempts=job.attempts,
            first_failed_at=job.first_failed_at,
        )
        # The letter's own (bounded) key, and no copy of the original headers: those are inside the
        # letter, and a huge key or header must not make the letter itself too large to produce. Only
        # the (bounded) trace context of this delivery's span.
        value = self._codec.encode(DEAD_LETTER, letter)
        headers = [*CONTENT_TYPE_HEADERS, *trace_headers()]
        await self._produce(job, self._dlq_topic, value, letter["key"], headers)
        self.stats.dead_lettered += 1
        self.metrics.dead_lettered(step.error_type)

    async def _event(self, job: _Job, kind: fx.EventType) -> None:
        message = _need(job.message)
        fields: dict[str, Any] = {"attempt": job.attempts}
        if kind is fx.EventType.SENT:
            fields["provider_message_id"] = _need(job.outcome).provider_message_id
        else:
            fields["reason"] = _need(job.step).error_type
        if kind is fx.EventType.DEAD_LETTERED:  # at the letter's own time, with no call's latency
            now = _need(job.letter_at)
        else:
            now, fields["latency_ms"] = _need(job.now), round(job.latency * 1000, 3)
        built = event(
            kind.value,
            occurred_at=now,
            notification_id=message["notification_id"],
            user_id=message["user_id"],
            service=message["service"],
            delivery_id=message["delivery_id"],
            channel=self._channel,
            category=message["category"],
            provider=self._provider,
            # requested_at stays null on workers' events, as the readers' contract says (v1 channel
            # messages lack it); readers take it from the delivery's ROUTED event (same delivery_id).
            template_id=message["template_id"],
            locale=message["locale"],
            **fields,
        )
        value = self._codec.encode(EVENT, built)  # encoded once: a retried produce keeps its event_id
        key = str(message["notification_id"]).encode()
        await self._produce(job, self._events_topic, value, key, _carried_headers(job.record))


@dataclass
class _Job:
    """One record's state while its plan runs, filled in by the claim and the call."""

    record: Record
    message: dict[str, Any] | None  # None: undecodable or checked out, and after an internal error
    producer: AsyncProducer
    step: Step | None = None  # why it is dead-lettered before any call; next_step's after the call
    attempts: int = 0
    first_failed_at: datetime | None = None
    claim: Claim | None = None
    outcome: Outcome | None = None
    latency: float = 0.0
    now: datetime | None = None  # when the outcome was settled
    holds: str | None = None  # the delivery id this job claimed, released from _in_flight at the end
    letter_at: datetime | None = None  # when the dead letter was made


def _need(value: T | None) -> T:
    """What an effect needs from an earlier one: a plan run out of order fails loudly, never quietly."""
    if value is None:
        raise AssertionError("an effect ran before the one that provides what it needs")
    return value


def _where(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _carried_headers(record: Record) -> list[tuple[str, str | bytes | None]]:
    """The headers a record's offspring carry: ours, every original one but its trace context, and the
    current span's context instead (the delivery's: a retry continues the trace from this attempt)."""
    carried: list[tuple[str, str | bytes | None]] = list(CONTENT_TYPE_HEADERS)
    carried += [(k, v) for k, v in without_trace_headers(record.headers) if k != "content-type"]
    carried += trace_headers()
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

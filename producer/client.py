"""``NotificationClient``: validate, encode and publish notification requests.

A send returns only once the broker has acknowledged the record (``acks=all`` on an idempotent
producer), or raises ``DeliveryError`` once ``Settings.produce_timeout_s`` has passed: it never hangs.
One background thread serves librdkafka's delivery reports for the sync, asyncio and batch APIs.

Timeout contract: ``send``, ``send_async``, ``send_batch``, ``send_batch_async`` and ``close`` wait on
Kafka (for room in the local queue, then for acknowledgements) for at most ``produce_timeout_s``, and
return or raise within it plus thread wake-up latency (a few ms; ``close`` up to one 50 ms poll more).
A batch's validating and encoding is the caller's own CPU time, proportional to its size, and comes on
top. librdkafka's own report, with its reason (``_MSG_TIMED_OUT``, ``UNKNOWN_TOPIC_OR_PART``, ...), is
what the caller sees whenever it arrives within the budget: see ``_message_timeout_ms``. A send that timed
out may still be stored by the broker (as with any timeout); the router deduplicates on
``notification_id`` and ``idempotency_key``.

Traces: each request gets a ``send <topic>`` PRODUCER span of its own, a child of the caller's current
span, made through the OpenTelemetry API only (the application's tracer provider is used, none is
installed here); its record carries that span's context in a ``traceparent`` header. A request sent
alone or in a batch thus has a context of its own: a trace of its own when the caller has no span.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import confluent_kafka
from opentelemetry.trace import Span, SpanKind

from notify_core.codec import CONTENT_TYPE_HEADERS, REQUEST, AvroCodec, default_codec
from notify_core.exceptions import DeliveryError
from notify_core.kafka_clients import make_producer
from notify_core.settings import Settings
from notify_core.topics import topic_names
from notify_core.tracing import TRACER, mark_error, messaging_attributes, trace_headers
from producer.models import NotificationRequest

RequestLike = NotificationRequest | Mapping[str, Any]
# librdkafka looks for timed-out messages once a second (hard-coded), so it reports a timeout up to 1 s
# after message.timeout.ms: the old cause of sends overshooting their timeout by up to a second.
_TIMEOUT_SCAN_S = 1.0
# From librdkafka queueing a report to a waiting caller seeing it (the poller's wake-up, the GIL).
_REPORT_MARGIN_S = 0.05
# Below this budget, no message timeout gets librdkafka's report in time without giving up in the
# first third of the budget; our own deadline answers when it is late.
_MIN_TIMEOUT_SHARE = 1 / 3
# How long a send waits for room in a full local queue before trying again.
_QUEUE_FULL_PAUSE_S = 0.005


def _message_timeout_ms(budget_s: float) -> int:
    """librdkafka's ``message.timeout.ms`` for sends bounded by ``budget_s``: early enough that its report
    (scan delay included) reaches the caller within the budget, for budgets of ~1.6 s and more."""
    seconds = max(budget_s - _TIMEOUT_SCAN_S - _REPORT_MARGIN_S, budget_s * _MIN_TIMEOUT_SHARE)
    return max(1, int(seconds * 1000))  # 0 would mean "retry forever"


class _Budget:
    """How long one call may still wait on Kafka. Measured only while waiting, so a batch's encoding
    (the caller's CPU time) is not charged and a healthy big batch does not time out on itself."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` of the budget; ``False`` (without sleeping) once it is spent."""
        if self.left <= 0:
            return False
        started = time.monotonic()
        time.sleep(min(seconds, self.left))
        self.left -= time.monotonic() - started
        return True


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A big batch allocates a few objects per request, none in cycles; generational GC passes over
    them are pure overhead (measured: half the batch throughput). Reference counting still frees them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Batch:
    """Collects a batch's delivery reports; written only by the poller thread."""

    def __init__(self, size: int) -> None:
        self.slots: list[SendResult | DeliveryError | None] = [None] * size
        self.remaining = size
        self.finished = threading.Event()
        if size == 0:
            self.finished.set()

    def done(self, index: int, outcome: SendResult | DeliveryError) -> None:
        self.slots[index] = outcome
        self.remaining -= 1
        if self.remaining == 0:
            self.finished.set()


@dataclass(frozen=True)
class SendResult:
    """Where the broker stored a request."""

    notification_id: str
    topic: str
    partition: int
    offset: int


class NotificationClient:
    """Publishes to ``<prefix>.requests`` keyed by ``user_id``. Thread-safe; use one per process."""

    def __init__(self, settings: Settings, *, codec: AvroCodec | None = None) -> None:
        self._settings = settings
        self._codec = codec or default_codec()
        self._topic = topic_names(settings).requests
        overrides: dict[str, Any] = {"message.timeout.ms": _message_timeout_ms(settings.produce_timeout_s)}
        self._producer = make_producer(settings, **overrides)
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, name="notify-sdk-poller", daemon=True)
        self._poller.start()

    # --- sync ---------------------------------------------------------------------------------
    def send(self, request: RequestLike) -> SendResult:
        """Publish one request and wait for the broker's acknowledgement."""
        budget = self._budget()
        future = self._future(NotificationRequest.parse(request), budget)
        try:
            return future.result(timeout=max(budget.left, 0.0))
        except TimeoutError as exc:
            raise self._timeout_error() from exc

    def send_batch(self, requests: Iterable[RequestLike]) -> list[SendResult]:
        """Publish many: all are validated first (nothing is sent if any is invalid), then pipelined.

        Returns results in input order. If some were not acknowledged, raises ``DeliveryError`` whose
        ``results`` holds the acknowledged ones and ``failures`` the ``(index, error)`` pairs.
        """
        budget = self._budget()
        with _cyclic_gc_paused():
            valid = [NotificationRequest.parse(r, index=i) for i, r in enumerate(requests)]
            batch = _Batch(len(valid))
            handed_over = len(valid)
            for index, request in enumerate(valid):
                if not self._produce(request, functools.partial(batch.done, index), budget):
                    handed_over = index  # the queue stayed full for the whole budget: send no more
                    break
        batch.finished.wait(max(budget.left, 0.0))
        # A snapshot: reports that come later keep landing in ``batch`` on the poller thread, unread.
        slots = list(batch.slots)
        results = [r for r in slots if isinstance(r, SendResult)]
        failures = [
            (i, self._missing_outcome(i < handed_over) if r is None else r)
            for i, r in enumerate(slots)
            if not isinstance(r, SendResult)
        ]
        if failures:
            first = failures[0][1]
            error = DeliveryError(
                f"{len(failures)} of {len(valid)} requests not acknowledged; first: {first}", code=first.code
            )
            error.results = results  # type: ignore[attr-defined]
            error.failures = failures  # type: ignore[attr-defined]
            raise error
        return results

    # --- asyncio ------------------------------------------------------------------------------
    async def send_async(self, request: RequestLike) -> SendResult:
        """Like ``send``, without blocking the event loop."""
        budget = self._budget()
        future = self._future(NotificationRequest.parse(request), budget)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(budget.left, 0.0))
        except TimeoutError as exc:
            raise self._timeout_error() from exc

    async def send_batch_async(self, requests: Iterable[RequestLike]) -> list[SendResult]:
        return await asyncio.to_thread(self.send_batch, list(requests))

    def broker_metadata(self, timeout_s: float) -> int:
        """How many brokers the cluster reports (a readiness probe); raises if none answer in time."""
        brokers = self._producer.list_topics(self._topic, timeout=timeout_s).brokers
        if not brokers:
            raise DeliveryError("no broker answered", code="_TRANSPORT")
        return len(brokers)

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self, timeout_s: float | None = None) -> None:
        """Wait for what is in flight (at most ``timeout_s``, default ``produce_timeout_s``), then stop.

        New sends are refused from the start; ``flush`` serves the remaining delivery reports itself,
        so the poller stops meanwhile instead of adding its last poll to the wait.
        """
        if self._closed.is_set():
            return
        self._closed.set()
        self._producer.flush(self._settings.produce_timeout_s if timeout_s is None else timeout_s)
        self._poller.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)

    # --- internals ----------------------------------------------------------------------------
    def _budget(self) -> _Budget:
        return _Budget(self._settings.produce_timeout_s)

    def _future(self, request: NotificationRequest, budget: _Budget) -> Future[SendResult]:
        future: Future[SendResult] = Future()

        def resolve(outcome: SendResult | DeliveryError) -> None:
            # A report after the caller's deadline may find the future cancelled (``send_async``'s
            # ``wait_for``); raising here would escape ``poll`` and stop the poller for every send.
            with contextlib.suppress(InvalidStateError):
                if isinstance(outcome, DeliveryError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

        if not self._produce(request, resolve, budget):
            raise self._queue_full_error()
        # A lone send should not wait out linger.ms: ask librdkafka to send what is queued now.
        self._producer.flush(0)
        return future

    def _span(self, notification_id: str, size: int) -> Span:
        """The request's own ``send`` PRODUCER span, a child of the caller's current span (if any), so
        that each request of a batch has a context of its own; it ends with the broker's answer."""
        span = TRACER.start_span(f"send {self._topic}", kind=SpanKind.PRODUCER)
        if span.is_recording():
            span.set_attributes(messaging_attributes("send", self._topic))
            span.set_attribute("messaging.message.body.size", size)
            span.set_attribute("notify.notification_id", notification_id)
        return span

    def _produce(
        self,
        request: NotificationRequest,
        on_result: Callable[[SendResult | DeliveryError], None],
        budget: _Budget,
    ) -> bool:
        """Hand one request to librdkafka; ``False`` if its queue stayed full for the whole budget."""
        if self._closed.is_set():
            raise RuntimeError("NotificationClient is closed")
        notification_id = str(request.notification_id)
        value = self._codec.encode(REQUEST, request.to_avro())
        span = self._span(notification_id, len(value))
        headers = [*CONTENT_TYPE_HEADERS, *trace_headers(span)]

        def on_delivery(err: confluent_kafka.KafkaError | None, msg: confluent_kafka.Message) -> None:
            if err is not None:
                mark_error(span, err.name())
                span.end()
                on_result(self._delivery_error(err, notification_id))
            else:
                partition, offset = msg.partition() or 0, msg.offset() or 0
                if span.is_recording():
                    span.set_attribute("messaging.destination.partition.id", str(partition))
                    span.set_attribute("messaging.kafka.offset", offset)
                span.end()
                on_result(SendResult(notification_id, msg.topic() or "", partition, offset))

        key = request.user_id.encode()
        while True:
            try:
                self._producer.produce(
                    self._topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                )
                return True
            except BufferError:
                # The local queue is full: let delivery reports drain it, then try again. The clock is
                # read only here, so the common path costs nothing per record.
                if not budget.pause(_QUEUE_FULL_PAUSE_S):
                    mark_error(span, "_QUEUE_FULL")
                    span.end()
                    return False
            except BaseException as exc:
                mark_error(span, exc)
                span.end()
                raise

    def _poll_forever(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def _timeout_error(self) -> DeliveryError:
        bootstrap = self._settings.kafka_bootstrap
        return DeliveryError(
            f"no acknowledgement from Kafka within {self._settings.produce_timeout_s:g}s: "
            f"is Kafka reachable at {bootstrap}?",
            code="_MSG_TIMED_OUT",
        )

    def _queue_full_error(self) -> DeliveryError:
        bootstrap = self._settings.kafka_bootstrap
        return DeliveryError(
            f"not sent: the producer's local queue stayed full for {self._settings.produce_timeout_s:g}s: "
            f"is Kafka reachable at {bootstrap}?",
            code="_QUEUE_FULL",
        )

    def _missing_outcome(self, handed_over: bool) -> DeliveryError:
        """The error for a batch slot with no report by the deadline."""
        return self._timeout_error() if handed_over else self._queue_full_error()

    def _delivery_error(self, err: confluent_kafka.KafkaError, notification_id: str) -> DeliveryError:
        code = err.name()
        if code in ("_MSG_TIMED_OUT", "_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN"):
            hint = f"is Kafka reachable at {self._settings.kafka_bootstrap}?"
        elif code in ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC"):
            hint = f"topic {self._topic} does not exist: run `notify topics apply`"
        else:
            hint = err.str()
        return DeliveryError(
            f"notification {notification_id} was not acknowledged by the broker ({code}): {hint}", code=code
        )

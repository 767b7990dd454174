"""``NotificationClient``: validate, encode and publish notification requests.

A send returns only once the broker has acknowledged the record (``acks=all`` on an idempotent
producer), or raises ``DeliveryError`` once ``Settings.produce_timeout_s`` has passed: it never hangs.
One background thread serves librdkafka's delivery reports for the sync, asyncio and batch APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import confluent_kafka

from notify_core.codec import CONTENT_TYPE_HEADERS, REQUEST, AvroCodec, default_codec
from notify_core.exceptions import DeliveryError
from notify_core.kafka_clients import make_producer
from notify_core.settings import Settings
from notify_core.topics import topic_names
from notify_core.tracing import trace_headers
from producer.models import NotificationRequest

RequestLike = NotificationRequest | Mapping[str, Any]
# Slack on top of librdkafka's own message timeout, so its report (with the reason) wins the race.
_WAIT_SLACK_S = 5.0


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
        self._producer = make_producer(settings)
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, name="notify-sdk-poller", daemon=True)
        self._poller.start()

    # --- sync ---------------------------------------------------------------------------------
    def send(self, request: RequestLike) -> SendResult:
        """Publish one request and wait for the broker's acknowledgement."""
        future = self._future(NotificationRequest.parse(request))
        try:
            return future.result(timeout=self._settings.produce_timeout_s + _WAIT_SLACK_S)
        except TimeoutError as exc:
            raise self._timeout_error() from exc

    def send_batch(self, requests: Iterable[RequestLike]) -> list[SendResult]:
        """Publish many: all are validated first (nothing is sent if any is invalid), then pipelined.

        Returns results in input order. If some were not acknowledged, raises ``DeliveryError`` whose
        ``results`` holds the acknowledged ones and ``failures`` the ``(index, error)`` pairs.
        """
        with _cyclic_gc_paused():
            valid = [NotificationRequest.parse(r, index=i) for i, r in enumerate(requests)]
            batch = _Batch(len(valid))
            headers = self._headers()  # one trace context for the whole batch
            for index, request in enumerate(valid):
                self._produce(request, headers, functools.partial(batch.done, index))
        if not batch.finished.wait(self._settings.produce_timeout_s + _WAIT_SLACK_S):
            raise self._timeout_error()
        failures = [(i, r) for i, r in enumerate(batch.slots) if isinstance(r, DeliveryError)]
        results = [r for r in batch.slots if isinstance(r, SendResult)]
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
        future = self._future(NotificationRequest.parse(request))
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(future), self._settings.produce_timeout_s + _WAIT_SLACK_S
            )
        except TimeoutError as exc:
            raise self._timeout_error() from exc

    async def send_batch_async(self, requests: Iterable[RequestLike]) -> list[SendResult]:
        return await asyncio.to_thread(self.send_batch, list(requests))

    # --- lifecycle ----------------------------------------------------------------------------
    def close(self, timeout_s: float | None = None) -> None:
        """Wait for what is in flight (bounded), then stop the poller."""
        if self._closed.is_set():
            return
        self._producer.flush(self._settings.produce_timeout_s if timeout_s is None else timeout_s)
        self._closed.set()
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
    def _future(self, request: NotificationRequest) -> Future[SendResult]:
        future: Future[SendResult] = Future()

        def resolve(outcome: SendResult | DeliveryError) -> None:
            if isinstance(outcome, DeliveryError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        self._produce(request, self._headers(), resolve)
        # A lone send should not wait out linger.ms: ask librdkafka to send what is queued now.
        self._producer.flush(0)
        return future

    @staticmethod
    def _headers() -> list[tuple[str, str | bytes | None]]:
        return [*CONTENT_TYPE_HEADERS, *trace_headers()]

    def _produce(
        self,
        request: NotificationRequest,
        headers: list[tuple[str, str | bytes | None]],
        on_result: Callable[[SendResult | DeliveryError], None],
    ) -> None:
        if self._closed.is_set():
            raise RuntimeError("NotificationClient is closed")
        notification_id = str(request.notification_id)
        value = self._codec.encode(REQUEST, request.to_avro())

        def on_delivery(err: confluent_kafka.KafkaError | None, msg: confluent_kafka.Message) -> None:
            if err is not None:
                on_result(self._delivery_error(err, notification_id))
            else:
                on_result(
                    SendResult(notification_id, msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
                )

        key = request.user_id.encode()
        while True:
            try:
                self._producer.produce(
                    self._topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                # The local queue is full: let delivery reports drain it, then try again.
                time.sleep(0.005)

    def _poll_forever(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def _timeout_error(self) -> DeliveryError:
        return DeliveryError(
            f"no acknowledgement from Kafka at {self._settings.kafka_bootstrap} within "
            f"{self._settings.produce_timeout_s:g}s",
            code="_MSG_TIMED_OUT",
        )

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

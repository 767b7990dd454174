"""An asyncio face on one idempotent producer: ``await produce(...)`` returns once the broker acked.

librdkafka calls delivery reports from ``poll``; one daemon thread polls and hands each report to
the event loop, so coroutines never block on Kafka.
"""

from __future__ import annotations

import asyncio
import threading

import confluent_kafka

from notify_core.kafka_clients import make_producer, translate
from notify_core.settings import Settings

Headers = list[tuple[str, str | bytes | None]]
CLOSE_TIMEOUT_S = 10.0


class AsyncProducer:
    def __init__(self, settings: Settings) -> None:
        self._producer = make_producer(settings)
        self._timeout_s = settings.produce_timeout_s
        self._running = True
        self._poller = threading.Thread(target=self._poll_forever, name="notify-async-producer", daemon=True)
        self._poller.start()

    async def produce(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def report(err: confluent_kafka.KafkaError | None, _msg: confluent_kafka.Message) -> None:
            loop.call_soon_threadsafe(
                _settle, done, None if err is None else translate(err, f"producing to {topic}")
            )

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers or [], on_delivery=report)
                break
            except BufferError:  # the local queue is full: let the poller drain it
                await asyncio.sleep(0.01)
        await asyncio.wait_for(done, self._timeout_s + 5)

    def close(self) -> int:
        """Flush (bounded) and stop the poller; returns how many records were still unsent."""
        left = self._producer.flush(CLOSE_TIMEOUT_S)
        self._running = False
        self._poller.join()
        return left

    def _poll_forever(self) -> None:
        while self._running:
            self._producer.poll(0.05)


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)

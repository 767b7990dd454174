"""User changes: the records that make every router drop a user's cached context within a second.

::

    API writes PostgreSQL, commits ─▶ ChangePublisher.publish(user_id, what)
      ─▶ <prefix>.user-changes (compacted, keyed by user_id, schema user_change)
      ─▶ ChangeListener in each router ─▶ on_change(user_id), i.e. UserDataRepository.invalidate_user

Publish after the database commit: a router that drops the context then reads the new rows (and a
read already under way does not cache the old ones: ``context_cache.py``).

The listener belongs to no consumer group: every process reads every partition, from the high
watermark it found in ``start()`` (nothing is cached before then, so nothing earlier matters, and
every later change is seen), commits nothing, and keeps polling through a broker outage (librdkafka
reconnects by itself). Partitions added to the topic while a router runs are not read by it until
it restarts; their users' changes reach it only at the cache TTL until then.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import confluent_kafka
import structlog

from notify_core.codec import CONTENT_TYPE_HEADERS, USER_CHANGE, default_codec
from notify_core.exceptions import ConfigError, DecodeError, DeliveryError, InvalidUserData, KafkaError
from notify_core.kafka_async import AsyncProducer
from notify_core.kafka_clients import make_consumer, make_producer, translate
from notify_core.log_throttle import LogThrottle
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.topics import topic_names

log = structlog.get_logger("user_changes")

# What a change can name (quiet hours and unsubscribes are preferences; e-mail addresses and phone
# numbers are contacts; locale and time zone are the user). Readers drop the whole context anyway.
KINDS = frozenset({"user", "preferences", "devices", "contacts"})
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
BATCH = 500
WARN_INTERVAL_S = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class UserChange:
    user_id: str
    changed_at: datetime
    what: tuple[str, ...]


# --- the record (pure) ------------------------------------------------------------------------------
def encode_change(user_id: str, what: Iterable[str], changed_at: datetime) -> tuple[bytes, bytes]:
    """The (key, value) of a change record; ``InvalidUserData`` for no user or an unknown kind."""
    kinds = sorted(set(what))
    if not user_id:
        raise InvalidUserData("a user change needs a user_id")
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise InvalidUserData(f"a user change names one or more of {sorted(KINDS)}, not {unknown or '[]'}")
    record = {"user_id": user_id, "changed_at": changed_at, "what": kinds}
    return user_id.encode(), default_codec().encode(USER_CHANGE, record)


def decode_change(data: bytes) -> UserChange:
    """A change record's value; ``DecodeError`` for anything else."""
    record = default_codec().decode(data, USER_CHANGE)
    return UserChange(record["user_id"], record["changed_at"], tuple(record["what"]))


def changed_user(key: bytes | None, value: bytes | None) -> str:
    """Whose context a record invalidates: the user it names, or, for a tombstone (a user erased,
    no value), its key. ``DecodeError`` when it names nobody."""
    if value is not None:
        return decode_change(value).user_id
    try:
        user_id = (key or b"").decode()
    except UnicodeDecodeError:
        raise DecodeError("tombstone key is not UTF-8 text") from None
    if not user_id:
        raise DecodeError("record has neither a value nor a key")
    return user_id


# --- publishing -------------------------------------------------------------------------------------
class ChangePublisher:
    """For the HTTP API: ``await publish(user_id, what)`` returns once the broker acknowledged it.

    Uses the given ``AsyncProducer`` (shared with the rest of the API, not closed here) or its own.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        producer: AsyncProducer | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._topic = topic_names(settings).user_changes
        self._owned = producer is None
        self._producer = producer or AsyncProducer(settings)
        self._clock = clock

    async def publish(self, user_id: str, what: Iterable[str]) -> None:
        """Raises ``InvalidUserData`` for a bad change, ``KafkaError`` when the broker refused it or
        ``DeliveryError`` when it did not answer in time."""
        key, value = encode_change(user_id, what, self._clock())
        try:
            await self._producer.produce(self._topic, value, key=key, headers=list(CONTENT_TYPE_HEADERS))
        except TimeoutError as exc:
            raise DeliveryError(f"user change not acknowledged by {self._topic} in time") from exc

    def close(self) -> int:
        """Flush and stop our own producer (a shared one is left alone); records left unsent."""
        return self._producer.close() if self._owned else 0


def publish_sync(settings: Settings, user_id: str, what: Iterable[str]) -> None:
    """One change, blocking until acknowledged (CLI, scripts, tests): ``DeliveryError`` otherwise."""
    topic = topic_names(settings).user_changes
    key, value = encode_change(user_id, what, utc_now())
    producer = make_producer(settings)
    reports: list[confluent_kafka.KafkaError | None] = []
    producer.produce(
        topic,
        value=value,
        key=key,
        headers=list(CONTENT_TYPE_HEADERS),
        on_delivery=lambda err, _msg: reports.append(err),
    )
    producer.flush(settings.produce_timeout_s + 5)  # the delivery report comes by message.timeout.ms
    if not reports:
        raise DeliveryError(f"user change not acknowledged by {topic} in time")
    if reports[0] is not None:
        failed = translate(reports[0], f"producing to {topic}")
        raise DeliveryError(str(failed), code=failed.code)


# --- listening --------------------------------------------------------------------------------------
class ChangeListener:
    """A daemon thread calling ``on_change(user_id)`` for every change published after ``start()``.

    A record that does not decode is logged and skipped, an ``on_change`` that raises is logged,
    consume errors are logged (each kind once a minute at most): none of them stops it.
    """

    def __init__(self, settings: Settings, on_change: Callable[[str], None]) -> None:
        self._settings = settings
        self._topic = topic_names(settings).user_changes
        self._on_change = on_change
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._throttle: LogThrottle[tuple[str, ...]] = LogThrottle(WARN_INTERVAL_S)
        self.applied = 0
        self.skipped = 0

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Assign every partition at its current high watermark, then poll on a daemon thread.

        Returns once assigned: a change published after this is seen. Waits up to ``timeout_s``
        for the broker; ``ConfigError`` if the topic does not exist (``notify topics apply``).
        """
        if self._thread is not None:
            raise RuntimeError("ChangeListener.start() called twice")
        # A throw-away group id: make_consumer needs one, nothing joins or commits to it.
        consumer = make_consumer(self._settings, f"notify-user-changes-{uuid.uuid4()}")
        try:
            assignment = _high_watermarks(consumer, self._topic, timeout_s)
            consumer.assign(assignment)
        except BaseException:
            consumer.close()
            raise
        self._thread = threading.Thread(
            target=self._run, args=(consumer,), name="notify-user-changes", daemon=True
        )
        self._thread.start()
        log.info("user_changes_listening", topic=self._topic, partitions=len(assignment))

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop polling and close the consumer; a listener never started is fine."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("user_changes_stop_timeout", waited_s=timeout_s)

    def _run(self, consumer: confluent_kafka.Consumer) -> None:
        poll_s = self._settings.user_changes_poll_s
        try:
            while not self._stopping.is_set():
                try:
                    messages = consumer.consume(BATCH, timeout=poll_s)
                except Exception as exc:  # e.g. a fatal client error: log it, keep the router going
                    self._warn(("consume", type(exc).__name__), "user_changes_consume_failed", error=str(exc))
                    self._stopping.wait(poll_s)
                    continue
                for msg in messages:
                    self._handle(msg)
        finally:
            consumer.close()

    def _handle(self, msg: confluent_kafka.Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                self._warn(("error", err.name()), "user_changes_consume_error", error=err.str())
            return
        record = Record.from_message(msg)
        try:
            user_id = changed_user(record.key, record.value)
        except DecodeError as exc:
            self.skipped += 1
            self._warn(
                ("decode", str(record.partition)),
                "user_change_undecodable",
                partition=record.partition,
                offset=record.offset,
                error=str(exc),
            )
            return
        try:
            self._on_change(user_id)
        except Exception as exc:
            self.skipped += 1
            log.error("user_change_failed", user_id=user_id, error=f"{type(exc).__name__}: {exc}"[:500])
            return
        self.applied += 1
        # From the producer's CreateTime: exact on one host, off by the clock skew between two.
        lag_ms = None if record.timestamp_ms is None else int(time.time() * 1000) - record.timestamp_ms
        log.info("user_change_applied", user_id=user_id, lag_ms=lag_ms)

    def _warn(self, key: tuple[str, ...], event: str, **fields: Any) -> None:
        emit = self._throttle.admit(key)
        if emit is not None:
            log.warning(event, **fields, **({} if emit.first else {"note": emit.summary()}))


def _high_watermarks(
    consumer: confluent_kafka.Consumer, topic: str, timeout_s: float
) -> list[confluent_kafka.TopicPartition]:
    """Every partition of ``topic`` at its high watermark now, retrying until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = max(0.5, deadline - time.monotonic())
        problem: Exception
        try:
            found = consumer.list_topics(topic, timeout=remaining).topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                problem = ConfigError(f"topic {topic} does not exist: run `notify topics apply`")
            else:
                ends = {
                    p: consumer.get_watermark_offsets(
                        confluent_kafka.TopicPartition(topic, p), timeout=remaining, cached=False
                    )
                    for p in sorted(found.partitions)
                }
                if all(end is not None for end in ends.values()):
                    return [
                        confluent_kafka.TopicPartition(topic, p, end[1]) for p, end in ends.items() if end
                    ]
                problem = KafkaError(f"no answer for the end of {topic} in {timeout_s:g}s", code="_TIMED_OUT")
        except confluent_kafka.KafkaException as exc:
            problem = translate(exc.args[0], f"reading the end of {topic}")
        if time.monotonic() >= deadline:
            raise problem
        time.sleep(0.2)

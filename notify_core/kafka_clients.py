"""The one Kafka client factory.

Every producer, consumer and admin client in the project is built here, from ``Settings``; the
librdkafka properties themselves are rendered by ``Settings`` (with a why-comment on each
non-default), except how a client logs, which is set here: ``ClientLogs`` turns librdkafka's per-attempt
log lines and error reports into one line per condition. librdkafka errors are translated to
``notify_core.exceptions.KafkaError`` here too.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import confluent_kafka
from confluent_kafka.admin import AdminClient

from notify_core.exceptions import KafkaError
from notify_core.log_throttle import LogThrottle, Recovery
from notify_core.settings import Settings

# librdkafka's own log lines go through stdlib logging (level set at the entry point), not raw stderr.
_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")

# With a broker down, librdkafka logs every reconnect attempt and error_cb reports each one again (~130
# lines for one 15 s send): each condition is logged once, then summarised at most this often.
REPEAT_SUMMARY_INTERVAL_S = 60.0
# librdkafka logs nothing when a broker is reachable again; its statistics say so (broker state "UP").
# ~2 KB of JSON every 5 s is negligible, and it is parsed only while a condition is open.
STATS_INTERVAL_MS = 5_000

_CLIENT_DEFAULTS: dict[str, Any] = {
    # A broker closing an idle connection (connections.max.idle.ms) is routine: librdkafka reconnects
    # when it needs to, so that is not worth a log line and an error_cb each time. Failed reconnects
    # are still reported.
    "log.connection.close": False,
}


def make_producer(
    settings: Settings, *, transactional_id: str | None = None, **overrides: Any
) -> confluent_kafka.Producer:
    """An idempotent ``acks=all`` producer; transactional when ``transactional_id`` is given."""
    conf = settings.kafka_producer(transactional_id=transactional_id)
    conf.update(overrides)
    return confluent_kafka.Producer(_with_client_logs(conf))


def make_consumer(
    settings: Settings,
    group_id: str,
    *,
    instance_id: str | None = None,
    per_topic_balance: bool = False,
    **overrides: Any,
) -> confluent_kafka.Consumer:
    """A manually committing, ``read_committed`` consumer in ``group_id``; a static member of the
    group (it gets its partitions straight back after a restart) when given an ``instance_id``;
    sharing out each of its topics with ``per_topic_balance`` (see ``Settings.kafka_consumer``)."""
    conf = settings.kafka_consumer(group_id, instance_id=instance_id, per_topic_balance=per_topic_balance)
    conf.update(overrides)
    return confluent_kafka.Consumer(_with_client_logs(conf))


def consume_ready(
    consumer: confluent_kafka.Consumer, size: int, timeout_s: float
) -> list[confluent_kafka.Message]:
    """Up to ``size`` messages as soon as there is one, waiting at most ``timeout_s`` for the first.

    ``consume(size, timeout)`` alone waits out the whole timeout unless a full batch arrives: at a few
    hundred requests/s that added the router's 0.2 s and the worker's 0.1 s to every notification
    (``notify bench e2e``). Under load the local queue holds a full batch and batches stay full.
    """
    first = consumer.consume(1, timeout=timeout_s)
    if not first or size <= 1:
        return first
    return first + consumer.consume(size - 1, timeout=0)


def produce_waiting(
    producer: confluent_kafka.Producer, topic: str, value: bytes | None, **kwargs: Any
) -> None:
    """``produce``, serving delivery reports while librdkafka's local queue is full (bulk writers)."""
    while True:
        try:
            producer.produce(topic, value=value, **kwargs)
            return
        except BufferError:
            producer.poll(0.01)


def make_admin(settings: Settings, **overrides: Any) -> AdminClient:
    conf = settings.kafka_admin()
    conf.update(overrides)
    # Throttled log lines only: admin clients are short-lived and had no error_cb before.
    conf.setdefault("logger", ClientLogs(REPEAT_SUMMARY_INTERVAL_S))
    return AdminClient(conf)


def _with_client_logs(conf: dict[str, Any]) -> dict[str, Any]:
    """Fill in the quiet defaults and one ``ClientLogs`` per client; explicit settings win."""
    for key, value in _CLIENT_DEFAULTS.items():
        conf.setdefault(key, value)
    logs = ClientLogs(REPEAT_SUMMARY_INTERVAL_S)
    conf.setdefault("logger", logs)
    conf.setdefault("error_cb", logs.error)
    if "stats_cb" not in conf:
        conf["stats_cb"] = logs.stats
        conf.setdefault("statistics.interval.ms", STATS_INTERVAL_MS)
    return conf


def fatal_error(msg: confluent_kafka.Message, context: str) -> KafkaError | None:
    """The consumer's fatal failure a consumed message reports (translated), or None.

    The message's error says ``_FATAL``; ``fatal()`` is set only on the client's own error.
    """
    err = msg.error()
    if err is None or not (err.fatal() or err.code() == confluent_kafka.KafkaError._FATAL):
        return None
    return translate(err, context)


def translate(err: confluent_kafka.KafkaError, context: str) -> KafkaError:
    """Our error for a librdkafka one, keeping its code name (e.g. ``_MSG_TIMED_OUT``)."""
    return KafkaError(f"{context}: {err.str()} ({err.name()})", code=err.name())


# (source, librdkafka log facility or error code, broker name or None): one condition of one client.
_Key = tuple[str, str, str | None]

# Conditions that a broker in state UP ends. Others (a fenced producer, a poll interval exceeded) are
# only throttled: there is no signal that they are over, so a repeat after the interval is summarised.
_CONNECTIVITY = {
    "log": frozenset({"FAIL"}),
    "error": frozenset({"_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE", "_SSL", "_AUTHENTICATION"}),
}
# librdkafka names the broker first: "[thrd:...]: 127.0.0.1:9092/1: Connect to ..." or, with TLS/SASL,
# "sasl_ssl://host:9093/bootstrap: ...". The rest of the text varies ("after 0ms") and is not part of a key.
_BROKER_PREFIX = re.compile(r"^(?:\[thrd:[^\]]*\]: )?(?P<broker>\S+/(?:\d+|bootstrap)): ")


def _broker(text: str) -> str | None:
    match = _BROKER_PREFIX.match(text)
    return match["broker"] if match else None


def _kafka_log() -> Any:
    # Imported here: logging setup must not be a hard dependency of building a client.
    import structlog

    return structlog.get_logger("kafka")


class ClientLogs:
    """One client's librdkafka log lines, error_cb reports and statistics: each condition (facility or
    error code, per broker) is logged when it starts, summarised at most once per ``interval_s`` while
    it repeats, and its end logged once (``kafka_client_recovered``) when the statistics show the broker
    UP again. Warnings and errors only: debug and info lines (``debug=...`` troubleshooting) all pass.

    librdkafka calls these from whichever thread polls the client, possibly several: hence the lock.
    """

    def __init__(
        self, interval_s: float = REPEAT_SUMMARY_INTERVAL_S, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._throttle: LogThrottle[_Key] = LogThrottle(interval_s, clock=clock)
        self._lock = threading.Lock()
        self._name: str | None = None  # librdkafka's name for the client, e.g. notify#producer-1

    def log(self, level: int, msg: str, *args: Any) -> None:
        """The ``logger`` protocol: confluent-kafka calls ``log(level, "%s [%s] %s", fac, name, text)``."""
        if level < logging.WARNING or len(args) != 3:
            _LIBRDKAFKA_LOG.log(level, msg, *args)
            return
        fac, name, text = (str(arg) for arg in args)
        with self._lock:
            self._name = name
            emit = self._throttle.admit(("log", fac, _broker(text)))
        if emit is None:
            return
        if emit.first:
            _LIBRDKAFKA_LOG.log(level, msg, *args)
        else:
            _LIBRDKAFKA_LOG.log(level, f"{msg} (%s)", *args, emit.summary())

    def error(self, err: confluent_kafka.KafkaError) -> None:
        """The ``error_cb``. Transient transport errors are retried by librdkafka itself: worth a
        warning, not a crash."""
        code, text = err.name(), err.str()
        with self._lock:
            emit = self._throttle.admit(("error", code, _broker(text)))
            name = self._name
        if emit is None:
            return
        fields: dict[str, Any] = {} if name is None else {"client": name}
        if not emit.first:
            fields.update(repeated=emit.count, in_last_s=round(emit.window_s), note=emit.summary())
        _kafka_log().warning("kafka_client_error", code=code, error=text, **fields)

    def stats(self, stats_json: str) -> None:
        """The ``stats_cb``: ends the connectivity conditions of brokers that are UP again."""
        with self._lock:
            if not self._throttle:
                return  # nothing open: the common case costs no parsing
        try:
            stats = json.loads(stats_json)
            states = {str(name): broker.get("state") for name, broker in stats["brokers"].items()}
            name = stats.get("name") or self._name
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        up = {broker for broker, state in states.items() if state == "UP"}
        if not up:
            return

        def is_over(key: _Key) -> bool:
            source, what, broker = key
            if what not in _CONNECTIVITY[source]:
                return False
            # A broker that is gone from the statistics (a bootstrap address, once the cluster's own
            # brokers are known) is over as soon as any broker is UP.
            return broker in up if broker in states else True

        with self._lock:
            recoveries = self._throttle.resolve(is_over)
        if recoveries:
            # One line for the client's state change, however many conditions it ends.
            _kafka_log().info("kafka_client_recovered", client=name, **_recovery_fields(recoveries))


def _recovery_fields(recoveries: list[Recovery[_Key]]) -> dict[str, Any]:
    return {
        "conditions": sorted(" ".join(part for part in r.key[1:] if part) for r in recoveries),
        "failed_for_s": round(max(r.duration_s for r in recoveries), 1),
        "occurrences": sum(r.occurrences for r in recoveries),
        "unreported": sum(r.unreported for r in recoveries),
    }

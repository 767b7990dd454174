"""The one Kafka client factory.

Every producer, consumer and admin client in the project is built here, from ``Settings``; the
librdkafka properties themselves are rendered by ``Settings`` (with a why-comment on each
non-default). librdkafka errors are translated to ``notify_core.exceptions.KafkaError`` here too.
"""

from __future__ import annotations

import logging
from typing import Any

import confluent_kafka
from confluent_kafka.admin import AdminClient

from notify_core.exceptions import KafkaError
from notify_core.settings import Settings

# librdkafka's own log lines go through stdlib logging (level set at the entry point), not raw stderr.
_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


def make_producer(
    settings: Settings, *, transactional_id: str | None = None, **overrides: Any
) -> confluent_kafka.Producer:
    """An idempotent ``acks=all`` producer; transactional when ``transactional_id`` is given."""
    conf = settings.kafka_producer(transactional_id=transactional_id)
    conf.update(overrides)
    conf.setdefault("logger", _LIBRDKAFKA_LOG)
    conf.setdefault("error_cb", _log_client_error)
    return confluent_kafka.Producer(conf)


def make_consumer(settings: Settings, group_id: str, **overrides: Any) -> confluent_kafka.Consumer:
    """A manually committing, ``read_committed`` consumer in ``group_id``."""
    conf = settings.kafka_consumer(group_id)
    conf.update(overrides)
    conf.setdefault("logger", _LIBRDKAFKA_LOG)
    conf.setdefault("error_cb", _log_client_error)
    return confluent_kafka.Consumer(conf)


def make_admin(settings: Settings, **overrides: Any) -> AdminClient:
    conf = settings.kafka_admin()
    conf.update(overrides)
    conf.setdefault("logger", _LIBRDKAFKA_LOG)
    return AdminClient(conf)


def translate(err: confluent_kafka.KafkaError, context: str) -> KafkaError:
    """Our error for a librdkafka one, keeping its code name (e.g. ``_MSG_TIMED_OUT``)."""
    return KafkaError(f"{context}: {err.str()} ({err.name()})", code=err.name())


def _log_client_error(err: confluent_kafka.KafkaError) -> None:
    # Imported here: logging setup must not be a hard dependency of building a client.
    import structlog

    # Transient transport errors are retried by librdkafka itself; they are worth a warning, not a crash.
    structlog.get_logger("kafka").warning("kafka_client_error", code=err.name(), error=err.str())

"""The local stack: Kafka and PostgreSQL of our own on 127.0.0.1, started and stopped idempotently.

``up`` starts what is not running (or finds a compatible server already answering, e.g. from
``docker-compose.kafka.yml``, and leaves it alone); ``down`` stops only what ``up`` started.
Each returns lines for a person to read.
"""

from __future__ import annotations

from notify_core.settings import Settings
from notify_core.stack import kafka_broker, postgres


def up(settings: Settings) -> list[str]:
    return [*postgres.start(settings), *kafka_broker.start(settings)]


def down(settings: Settings) -> list[str]:
    return [*kafka_broker.stop(settings), *postgres.stop(settings)]


def status(settings: Settings) -> list[str]:
    return [kafka_broker.status(settings), postgres.status(settings)]

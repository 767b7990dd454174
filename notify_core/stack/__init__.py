"""The local stack: Kafka and PostgreSQL of our own on 127.0.0.1, started and stopped idempotently.

``up`` starts what is not running (or finds a compatible server already answering, e.g. from
``docker-compose.kafka.yml``, and leaves it alone); ``down`` stops only what ``up`` started.
``up`` also makes sure Debian's ``prometheus`` package is there (its ``promtool`` tests the alert
rules); ``with_monitoring`` starts the Prometheus server and the lag exporter too. Each returns
lines for a person to read.
"""

from __future__ import annotations

from notify_core.settings import Settings
from notify_core.stack import kafka_broker, lag_service, postgres, prometheus


def up(settings: Settings, *, with_monitoring: bool = False) -> list[str]:
    lines = [*postgres.start(settings), *kafka_broker.start(settings)]
    if with_monitoring:
        return [*lines, *prometheus.start(settings), *lag_service.start(settings)]
    return [*lines, *[line for line in [prometheus.install()] if line]]


def down(settings: Settings) -> list[str]:
    return [
        *lag_service.stop(settings),
        *prometheus.stop(settings),
        *kafka_broker.stop(settings),
        *postgres.stop(settings),
    ]


def status(settings: Settings) -> list[str]:
    return [kafka_broker.status(settings), postgres.status(settings), prometheus.status(settings)]

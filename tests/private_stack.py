"""A Kafka and a PostgreSQL of one test module's own, for tests that stop and start them.

Stopping the shared stack would break every other test, so a module that takes the broker or the
database away makes its fixture here, on ports and in a folder of its own (``OUTAGE``, ``EFFECTS``):
two such modules never share a server, even when run at the same time from two shells. The fixture is
module-scoped, so each stack is started once for its module and stopped when the module ends; pytest
runs modules one after another, so a whole suite has at most one private stack up at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from notify_core.settings import Settings
from notify_core.stack import kafka_broker, postgres


@dataclass(frozen=True)
class PrivateStack:
    """Where one module's stack lives; ports distinct from the shared stack's and from each other."""

    kafka_port: int
    kafka_controller_port: int
    postgres_port: int
    folder: str  # under the cache dir: the broker's and the cluster's data
    prefix: str  # topic prefix stem, for telling the modules' topics apart


OUTAGE = PrivateStack(19192, 19193, 25532, "outage-stack", "o")
EFFECTS = PrivateStack(19292, 19293, 25632, "effects-stack", "e")


def private_settings(base: Settings, stack: PrivateStack) -> Settings:
    return base.model_copy(
        update={
            "kafka_port": stack.kafka_port,
            "kafka_controller_port": stack.kafka_controller_port,
            "kafka_bootstrap": f"127.0.0.1:{stack.kafka_port}",
            "kafka_heap": "512m",
            "postgres_port": stack.postgres_port,
            "database_url": base.database_url.__class__(
                f"postgresql://notify@127.0.0.1:{stack.postgres_port}/notify"
            ),
            "cache_dir": base.cache_dir / stack.folder,
            "topic_prefix": f"{stack.prefix}-{uuid.uuid4().hex[:8]}",
            "topic_partitions": 3,
            "produce_timeout_s": 10.0,
        }
    )


def private_stack_fixture(stack: PrivateStack) -> Callable[..., Iterator[Settings]]:
    """A module-scoped ``private_stack`` fixture: assign it to that name in the test module."""

    @pytest.fixture(scope="module", name="private_stack")
    def fixture(base_settings: Settings) -> Iterator[Settings]:
        """A Kafka and a PostgreSQL of this module's own, started here and stopped after."""
        own = private_settings(base_settings, stack)
        postgres.start(own)
        kafka_broker.start(own)
        try:
            yield own
        finally:
            kafka_broker.stop(own)
            postgres.stop(own)

    return fixture

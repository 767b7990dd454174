"""Shared fixtures.

Integration tests run against one real stack per session: the project's own (started here if
``make up`` has not already), or an existing cluster and database named by ``NOTIFY_KAFKA_BOOTSTRAP``
and ``NOTIFY_DATABASE_URL``. Each test gets its own topic prefix, so topics never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from notify_core.settings import Settings


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack_settings(base_settings: Settings) -> Settings:
    """Settings pointing at a running stack, starting the project's own when none is named."""
    if not (os.environ.get("NOTIFY_KAFKA_BOOTSTRAP") and os.environ.get("NOTIFY_DATABASE_URL")):
        from notify_core import stack

        stack.up(base_settings)
    return base_settings


@pytest.fixture
def settings(stack_settings: Settings) -> Iterator[Settings]:
    """Stack settings with a unique topic prefix; the topics are created before and deleted after."""
    from notify_core.kafka_clients import make_admin
    from notify_core.topic_admin import apply_topics
    from notify_core.topics import topic_specs

    unique = stack_settings.model_copy(
        update={
            "topic_prefix": f"t-{uuid.uuid4().hex[:10]}",
            "topic_partitions": 3,
            "produce_timeout_s": 10.0,
        }
    )
    admin = make_admin(unique)
    specs = topic_specs(unique)
    apply_topics(admin, specs)
    yield unique
    for future in admin.delete_topics([s.name for s in specs], operation_timeout=30).values():
        future.result()

"""Shared fixtures.

Integration tests run against one real stack per session: the project's own (started here if
``make up`` has not already), or an existing cluster and database named by ``NOTIFY_KAFKA_BOOTSTRAP``
and ``NOTIFY_DATABASE_URL``. Each test gets its own topic prefix and consumer groups, so neither
collides with another test's, whether it runs at the same time (``make test`` runs the suite on
pytest-xdist workers) or in another checkout against the same stack.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from notify_core.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test gets a node id of its own, or the session stops.

    pytest 9.2 builds a test's id from its original name and its parametrize ids only, so
    schemathesis' one-test-per-operation items (``test_api_conforms_to_its_openapi_document[GET
    /healthz]``, ...) all got one bare id. A serial run still ran each, but pytest-xdist's file and
    group schedulers keep their work by id, so they ran the first operation and silently dropped
    the other 21. Such an item gets back the id its name gives it (what pytest before 9.2 made).
    """
    counts = Counter(item.nodeid for item in items)
    for item in items:
        parent = item.parent
        if counts[item.nodeid] < 2 or parent is None or "[" not in item.name:
            continue
        base, _, params = item.name.partition("[")
        # Node._id is where pytest 9.2 keeps the id (``nodeid`` renders it); should that move, the
        # check below stops the session instead of letting a parallel run drop tests.
        item._id = parent.id.child(base).with_params(params.removesuffix("]"))
    shared = sorted(nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1)
    if shared:
        raise pytest.UsageError(f"tests share a node id, so a parallel run would skip some: {shared}")


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def stack_settings(base_settings: Settings) -> Settings:
    """Settings pointing at a running stack, starting the project's own when none is named.

    Every xdist worker asks at session start: a lock file makes the first start the stack while
    the others wait, then find it running (two at once would both initdb, format and bind).
    """
    if not (os.environ.get("NOTIFY_KAFKA_BOOTSTRAP") and os.environ.get("NOTIFY_DATABASE_URL")):
        from notify_core import stack

        base_settings.cache_dir.mkdir(parents=True, exist_ok=True)
        with (base_settings.cache_dir / ".stack-up.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            stack.up(base_settings)
    return base_settings


@pytest.fixture
def settings(stack_settings: Settings) -> Iterator[Settings]:
    """Stack settings with a unique topic prefix and consumer groups named after it; the topics are
    created before and deleted after.

    The groups matter as much as the topics: a router is a static group member and a transactional
    producer under ``<router_group>-<instance id>``, so two tests' routers on the default group and
    id would fence each other, and two sinks or workers on one group would share out partitions.
    """
    from notify_core.kafka_clients import make_admin
    from notify_core.topic_admin import apply_topics
    from notify_core.topics import topic_specs

    prefix = f"t-{uuid.uuid4().hex[:10]}"
    unique = stack_settings.model_copy(
        update={
            "topic_prefix": prefix,
            "router_group": f"{prefix}-router",
            "sink_group": f"{prefix}-sink",
            "worker_group_prefix": prefix,
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

"""Throw-away topics and a throw-away database schema for a benchmark run, removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from notify_core.db.connect import connect
from notify_core.db.migrate import migrate
from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.topic_admin import apply_topics
from notify_core.topics import topic_specs


@contextmanager
def scratch(settings: Settings, **updates: Any) -> Iterator[tuple[Settings, str]]:
    """(settings with a unique topic prefix and ``updates``, name of a migrated schema of its own)."""
    bench = settings.model_copy(update={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}", **updates})
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_admin(bench)
    specs = topic_specs(bench)
    apply_topics(admin, specs)
    with connect(bench) as conn:
        conn.execute(f'create schema "{schema}"')
        conn.commit()
    try:
        with connect(bench, schema=schema) as conn:
            migrate(conn)
            conn.commit()
        yield bench, schema
    finally:
        for future in admin.delete_topics([s.name for s in specs], operation_timeout=30).values():
            future.result()
        with connect(bench) as conn:
            conn.execute(f'drop schema "{schema}" cascade')
            conn.commit()

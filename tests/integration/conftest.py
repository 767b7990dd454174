"""Fixtures for tests that use PostgreSQL: a schema of their own per test, migrated, dropped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from notify_core.db.connect import connect
from notify_core.db.migrate import migrate
from notify_core.settings import Settings


@pytest.fixture
def db_schema(stack_settings: Settings) -> Iterator[tuple[Settings, str]]:
    """(settings, schema name): a fresh, migrated schema for this test only."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with connect(stack_settings) as conn:
        conn.execute(f'create schema "{schema}"')
        conn.commit()
    with connect(stack_settings, schema=schema) as conn:
        migrate(conn)
        conn.commit()
    yield stack_settings, schema
    with connect(stack_settings) as conn:
        conn.execute(f'drop schema "{schema}" cascade')
        conn.commit()

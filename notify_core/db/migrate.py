"""Versioned SQL migrations: ``migrations/NNNN_name.sql``, applied in order, each once.

Each file runs in its own transaction under an advisory lock, so two migrators never race; the
applied versions and checksums are kept in ``schema_migrations``. An applied file whose content
changed is an error, never silently re-run. Works inside whatever ``search_path`` the connection has.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from notify_core.exceptions import DatabaseError
from notify_core.resources import package_dir

MIGRATIONS = package_dir("notify_core.db") / "migrations"  # shipped in the wheel as package data
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_ID = 7_004_231  # any constant: identifies "notify migrations" among advisory locks


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load(folder: Path = MIGRATIONS) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise DatabaseError(f"{path.name}: migrations must be named NNNN_name.sql")
        found.append(Migration(int(match["version"]), match["name"], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError("two migrations share a version number")
    return found


def migrate(conn: psycopg.Connection[Any], folder: Path = MIGRATIONS) -> list[str]:
    """Apply what is pending; returns one line per applied migration (none when up to date)."""
    applied_lines: list[str] = []
    with conn.transaction():
        conn.execute(
            "create table if not exists schema_migrations (version int primary key, name text not null,"
            " checksum text not null, applied_at timestamptz not null default now())"
        )
    for migration in load(folder):
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            row = conn.execute(
                "select checksum from schema_migrations where version = %s", (migration.version,)
            ).fetchone()
            if row is not None:
                if row[0] != migration.checksum:
                    raise DatabaseError(
                        f"migration {migration.version:04d}_{migration.name} changed after it was applied;"
                        " add a new migration instead"
                    )
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "insert into schema_migrations (version, name, checksum) values (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied_lines.append(f"applied {migration.version:04d}_{migration.name}")
    return applied_lines

"""A process's identity among its peers: a slot number claimed in PostgreSQL.

The router's ``transactional.id`` and a worker's delivery-log owner and group instance id must be
distinct between live processes (two routers sharing one fence each other) and stable across a
restart (a restarted router must fence its own predecessor's open transaction; a restarted worker
takes back its own leases at once). A slot gives both: each process takes the lowest free slot of
its kind with a session-level advisory lock, held by one connection it keeps open. A process that
dies loses its connection, so PostgreSQL frees the slot at once, and its replacement, taking the
lowest free one, gets its predecessor's identity back.

An explicitly configured instance id (``NOTIFY_ROUTER_INSTANCE_ID`` / ``NOTIFY_WORKER_INSTANCE_ID``:
a StatefulSet ordinal, say) is used as it is, and no slot is claimed.

If PostgreSQL restarts, the locks are gone: a watcher thread takes the same slot back as soon as
it can. Should another process have taken it meanwhile, the process stops with a clear error,
since it now shares an identity.
"""

from __future__ import annotations

import contextlib
import os
import threading
import zlib
from collections.abc import Callable

import psycopg
import structlog

from notify_core.exceptions import ConfigError, DatabaseError
from notify_core.settings import Settings

log = structlog.get_logger("identity")
MAX_SLOTS = 1024
WATCH_EVERY_S = 2.0


def lock_key(kind: str) -> int:
    """The advisory lock's first key for ``kind`` (a signed 32-bit int, as PostgreSQL wants)."""
    return zlib.crc32(kind.encode()) - 2**31


class Slot:
    """The lowest free slot of ``kind``, held until ``release`` (or the process's death)."""

    def __init__(
        self, url: str, kind: str, *, on_lost: Callable[[str], None] | None = None, watch: bool = True
    ) -> None:
        self._url, self.kind, self._key = url, kind, lock_key(kind)
        self._on_lost = on_lost or _exit_now
        self._conn = self._connect()
        self.number = self._take_lowest()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if watch:
            self._watcher = threading.Thread(target=self._watch, name="notify-identity", daemon=True)
            self._watcher.start()

    @property
    def name(self) -> str:
        return f"slot-{self.number}"

    def release(self) -> None:
        self._stop.set()
        with contextlib.suppress(psycopg.Error):
            self._conn.close()  # the lock goes with the session

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        try:
            return psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL to claim an instance slot: {exc}") from exc

    def _try(self, number: int) -> bool:
        row = self._conn.execute("select pg_try_advisory_lock(%s, %s)", (self._key, number)).fetchone()
        return bool(row and row[0])

    def _take_lowest(self) -> int:
        for number in range(MAX_SLOTS):
            if self._try(number):
                log.info("instance_slot_claimed", kind=self.kind, slot=number)
                return number
        raise ConfigError(f"all {MAX_SLOTS} instance slots of {self.kind} are taken")

    def _watch(self) -> None:
        held = True  # healthy means: the session answers AND it holds the lock
        while not self._stop.wait(WATCH_EVERY_S):
            if held:
                try:
                    self._conn.execute("select 1")
                    continue
                except psycopg.Error:
                    held = False
            # The session is gone, and the lock with it: take the same slot back.
            try:
                self._conn = self._connect()
                taken = self._try(self.number)
            except (psycopg.Error, DatabaseError):
                continue  # still away: try again on the next tick
            held = taken
            if taken:
                log.warning("instance_slot_reclaimed", kind=self.kind, slot=self.number)
            else:
                self._on_lost(
                    f"instance slot {self.number} of {self.kind} was taken by another process while"
                    " PostgreSQL was away; stopping, since two processes now share one identity"
                )
                return


def with_slot(settings: Settings, field: str, kind: str) -> tuple[Settings, Slot | None]:
    """``settings`` with the instance id ``field`` as configured, or set to a slot claimed now."""
    if field in settings.model_fields_set:
        return settings, None
    slot = Slot(settings.database_url.get_secret_value(), kind)
    return settings.model_copy(update={field: slot.name}), slot


def _exit_now(message: str) -> None:
    log.error("instance_slot_lost", error=message)
    os._exit(70)  # EX_SOFTWARE: the supervisor restarts us under a new, free slot

"""Random (version 4) UUIDs for ids minted on hot paths: notifications, events, dead letters.

``uuid.uuid4()`` reads ``os.urandom`` for every id; under py-spy that syscall showed up in the SDK's
batch path and the router's event path, where it also lets other threads take the GIL mid-batch.
``random_uuid`` cuts ids from one read of 256 at a time: the same source, one syscall per 256.
"""

from __future__ import annotations

import os
import threading
import uuid

_IDS_PER_READ = 256


class _RandomIds:
    def __init__(self) -> None:
        self._reset()
        # A forked child (gunicorn --preload, multiprocessing) must not hand out its parent's next ids.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # the SDK and the workers mint ids on many threads at once
        self._pool = b""
        self._next = 0

    def __call__(self) -> uuid.UUID:
        with self._lock:
            if self._next >= len(self._pool):
                self._pool, self._next = os.urandom(16 * _IDS_PER_READ), 0
            raw = self._pool[self._next : self._next + 16]
            self._next += 16
        return uuid.UUID(bytes=raw, version=4)  # sets the version and variant bits, as uuid4 does


random_uuid = _RandomIds()

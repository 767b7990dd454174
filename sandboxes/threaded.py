"""Serving an asyncio sandbox from a daemon thread with an event loop of its own.

Tests and benchmarks whose client runs in another loop (or another process) need the sandbox to
keep answering while they block; this is the one way every asyncio sandbox does that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Generic, Protocol, Self, TypeVar

T = TypeVar("T")
Ready = concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]]


class AsyncServer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=AsyncServer)


class ServingThread(Generic[S]):
    """Starts ``sandbox`` on its own thread; returns once it listens (or raises why it could not)."""

    def __init__(self, sandbox: S, name: str, start_timeout_s: float = 30.0) -> None:
        self.sandbox = sandbox
        ready: Ready = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name=name, daemon=True)
        self._thread.start()
        self._loop, self._stop = ready.result(timeout=start_timeout_s)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(
        self, ready: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]]
    ) -> None:
        async def serve() -> None:
            stop = asyncio.Event()
            await self.sandbox.start()
            ready.set_result((asyncio.get_running_loop(), stop))
            try:
                await stop.wait()
            finally:
                await self.sandbox.stop()

        try:
            asyncio.run(serve())
        except BaseException as exc:  # the caller waiting on ``ready`` must hear why, not hang
            if not ready.done():
                ready.set_exception(exc)

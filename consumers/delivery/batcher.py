"""Group commit for coroutines: many concurrent ``submit`` calls become one call on a list.

Each database commit waits for a WAL flush (milliseconds); hundreds of deliveries in flight each
committing alone spend their time queueing for it. A ``Batcher`` runs one batch at a time: whatever
was submitted while the previous batch ran goes together in the next, so the batch size follows the
load with no timer and no added latency when idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")


class Batcher(Generic[Req, Res]):
    def __init__(self, run: Callable[[list[Req]], Awaitable[Sequence[Res]]], max_batch: int = 500) -> None:
        self._run, self._max_batch = run, max_batch
        self._queue: list[tuple[Req, asyncio.Future[Res]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, request: Req) -> Res:
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            try:
                results = await self._run([request for request, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
            except Exception as exc:  # every caller of this batch hears the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

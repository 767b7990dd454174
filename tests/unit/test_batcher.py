from __future__ import annotations

import asyncio

import pytest

from consumers.delivery.batcher import Batcher


@pytest.mark.asyncio
async def test_concurrent_submits_share_batches_and_get_their_own_results() -> None:
    sizes: list[int] = []

    async def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(run, max_batch=40)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(100)))
    assert results == [i * 10 for i in range(100)]
    assert sum(sizes) == 100
    assert max(sizes) <= 40
    assert len(sizes) < 10  # batched, not one call each


@pytest.mark.asyncio
async def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def run(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if "bad" in items:
            raise ValueError("boom")
        return items

    batcher: Batcher[str, str] = Batcher(run)
    with pytest.raises(ValueError, match="boom"):
        await asyncio.gather(batcher.submit("bad"), batcher.submit("x"))
    assert await batcher.submit("ok") == "ok"


@pytest.mark.asyncio
async def test_a_wrong_result_count_is_an_error_not_a_silent_mismatch() -> None:
    async def run(items: list[int]) -> list[int]:
        return items[:-1]

    batcher: Batcher[int, int] = Batcher(run)
    with pytest.raises(RuntimeError, match="gave"):
        await asyncio.gather(batcher.submit(1), batcher.submit(2))

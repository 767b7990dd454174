"""A librdkafka call that never returns is cut off by its deadline, instead of hanging the router."""

from __future__ import annotations

import threading

import pytest

from consumers.router.txn import StuckCall, call_with_deadline


def test_a_call_that_returns_gives_its_result_and_its_errors() -> None:
    """Within the deadline, the result or the exception is handed over as it is."""
    assert call_with_deadline(lambda: 42, 5.0) == 42
    with pytest.raises(ZeroDivisionError):
        call_with_deadline(lambda: 1 // 0, 5.0)


def test_a_call_stuck_past_its_deadline_raises_stuck_call() -> None:
    """A blocked call (librdkafka #5456) becomes StuckCall, and the caller can go on."""
    release = threading.Event()
    with pytest.raises(StuckCall):
        call_with_deadline(lambda: release.wait(30), 0.2)
    release.set()

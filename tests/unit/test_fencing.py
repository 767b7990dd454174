"""Rebuilding a fenced consumer: allowed now and then, refused when it keeps happening."""

from __future__ import annotations

import pytest

from notify_core.exceptions import ConfigError
from notify_core.fencing import RebuildBudget


def test_an_occasional_fence_is_rebuilt_every_time() -> None:
    """One fence per outage, outages minutes apart: never refused."""
    budget = RebuildBudget(limit=3, window_s=300)
    for n in range(10):
        budget.spend(n * 400.0, "router consumer")


def test_fences_that_keep_coming_mean_a_twin_and_stop_the_process() -> None:
    """A fourth fence within the window names the cause instead of fencing the twin back."""
    budget = RebuildBudget(limit=3, window_s=300)
    for t in (0.0, 10.0, 20.0):
        budget.spend(t, "router consumer")
    with pytest.raises(ConfigError, match="same instance id"):
        budget.spend(30.0, "router consumer")

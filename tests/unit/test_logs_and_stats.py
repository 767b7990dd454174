"""Pure helpers: log redaction and percentiles."""

from __future__ import annotations

import pytest

from notify_core.logs import mask, redact
from notify_core.stats import percentile, summary_ms


def test_personal_data_is_masked_and_the_rest_kept() -> None:
    event = redact(
        None, "info", {"event": "sent", "phone": "+15555550123", "email": "a@b.c", "delivery_id": "d1"}
    )
    assert event["phone"] == mask("+15555550123")
    assert "+1555" not in str(event)
    assert "a@b.c" not in str(event)
    assert event["delivery_id"] == "d1"


def test_mask_is_stable_and_distinct() -> None:
    assert mask("x") == mask("x") != mask("y")


def test_percentile_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([3.0], 0) == 3.0


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="pct"):
        percentile([1.0], 101)


def test_summary_in_milliseconds() -> None:
    assert summary_ms([0.001, 0.002]) == {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 2.0, "max_ms": 2.0}

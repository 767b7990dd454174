"""The SDK's timeout arithmetic: librdkafka's message timeout against the caller's budget."""

from __future__ import annotations

import pytest

from producer.client import _REPORT_MARGIN_S, _TIMEOUT_SCAN_S, _Budget, _message_timeout_ms


@pytest.mark.parametrize(("budget_s", "expected_ms"), [(15.0, 13_950), (2.0, 950), (1.0, 333), (0.001, 1)])
def test_message_timeout(budget_s: float, expected_ms: int) -> None:
    assert _message_timeout_ms(budget_s) == expected_ms


@pytest.mark.parametrize("budget_s", [1.6, 2.0, 5.0, 15.0, 120.0])
def test_from_1_6_s_librdkafkas_report_always_lands_within_the_budget(budget_s: float) -> None:
    # librdkafka reports a timeout at its next once-a-second scan after message.timeout.ms.
    latest_report_s = _message_timeout_ms(budget_s) / 1000 + _TIMEOUT_SCAN_S + _REPORT_MARGIN_S
    assert latest_report_s <= budget_s


def test_budget_is_spent_by_pauses_and_then_refuses() -> None:
    budget = _Budget(0.02)
    pauses = 0
    while budget.pause(0.005):
        pauses += 1
    assert 1 <= pauses <= 5
    assert budget.left <= 0
    assert not budget.pause(0.005)

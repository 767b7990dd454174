"""Log throttling: the pure ``LogThrottle`` and the per-client ``ClientLogs`` built on it, on a fake clock."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from confluent_kafka import KafkaError
from structlog.testing import capture_logs

from notify_core.kafka_clients import ClientLogs, _broker
from notify_core.log_throttle import Emit, LogThrottle


@pytest.fixture(autouse=True)
def default_structlog() -> None:
    """structlog's defaults, whatever an earlier test in this process configured: a CLI run in-process
    (``configure_logging("WARNING")``) would filter out the info-level lines asserted here."""
    structlog.reset_defaults()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- LogThrottle ---------------------------------------------------------------------------------
def test_first_occurrence_passes_and_repeats_are_summarised_once_per_interval() -> None:
    clock = FakeClock()
    throttle: LogThrottle[str] = LogThrottle(60.0, clock=clock)
    assert throttle.admit("refused") == Emit(first=True, count=1, window_s=0.0)
    for _ in range(9):
        clock.now += 1.0
        assert throttle.admit("refused") is None
    clock.now += 51.0  # 60 s after the first line
    summary = throttle.admit("refused")
    assert summary == Emit(first=False, count=10, window_s=60.0)
    assert summary.summary() == "repeated 10 times in the last 60 s"
    # The window restarts at the summary: the next repeat is quiet again.
    clock.now += 1.0
    assert throttle.admit("refused") is None


def test_a_rare_repeat_is_let_through_with_its_count() -> None:
    clock = FakeClock()
    throttle: LogThrottle[str] = LogThrottle(60.0, clock=clock)
    throttle.admit("fenced")
    clock.now += 600.0
    assert throttle.admit("fenced") == Emit(first=False, count=1, window_s=600.0)


def test_keys_are_independent() -> None:
    throttle: LogThrottle[tuple[str, str]] = LogThrottle(60.0, clock=FakeClock())
    assert throttle.admit(("producer-1", "_TRANSPORT")) is not None
    assert throttle.admit(("producer-2", "_TRANSPORT")) is not None
    assert throttle.admit(("producer-1", "_ALL_BROKERS_DOWN")) is not None
    assert throttle.admit(("producer-1", "_TRANSPORT")) is None


def test_resolve_reports_each_condition_once_and_a_new_failure_is_news_again() -> None:
    clock = FakeClock()
    throttle: LogThrottle[str] = LogThrottle(60.0, clock=clock)
    for _ in range(5):
        throttle.admit("down")
    throttle.admit("other")
    clock.now += 30.0

    [recovery] = throttle.resolve(lambda key: key == "down")
    assert recovery.key == "down"
    assert (recovery.occurrences, recovery.unreported, recovery.duration_s) == (5, 4, 30.0)
    assert throttle.resolve(lambda key: key == "down") == []  # once per state change
    assert throttle.open_keys() == ["other"]
    assert throttle.admit("down") == Emit(first=True, count=1, window_s=0.0)


def test_unreported_counts_only_what_no_summary_covered() -> None:
    clock = FakeClock()
    throttle: LogThrottle[str] = LogThrottle(10.0, clock=clock)
    throttle.admit("down")
    throttle.admit("down")
    clock.now += 10.0
    assert throttle.admit("down") == Emit(first=False, count=2, window_s=10.0)
    throttle.admit("down")
    [recovery] = throttle.resolve(lambda _key: True)
    assert (recovery.occurrences, recovery.unreported) == (4, 1)


def test_bool_says_whether_anything_is_open() -> None:
    throttle: LogThrottle[str] = LogThrottle(clock=FakeClock())
    assert not throttle
    throttle.admit("x")
    assert throttle
    throttle.resolve(lambda _key: True)
    assert not throttle


def test_the_table_is_bounded_dropping_the_least_recently_seen() -> None:
    throttle: LogThrottle[str] = LogThrottle(60.0, clock=FakeClock(), max_keys=2)
    throttle.admit("a")
    throttle.admit("b")
    throttle.admit("a")  # a is now the most recent
    throttle.admit("c")
    assert throttle.open_keys() == ["a", "c"]


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        LogThrottle(0.0)
    with pytest.raises(ValueError, match="max_keys"):
        LogThrottle(max_keys=0)


# --- ClientLogs ------------------------------------------------------------------------------------
BOOTSTRAP = "127.0.0.1:1/bootstrap"
REFUSED = f"{BOOTSTRAP}: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"


def refused_attempt(logs: ClientLogs) -> None:
    """What one failed reconnect looks like to a client: a log line and two error reports."""
    logs.log(logging.ERROR, "%s [%s] %s", "FAIL", "notify#producer-1", f"[thrd:{BOOTSTRAP}]: {REFUSED}")
    logs.error(KafkaError(KafkaError._TRANSPORT, REFUSED))
    logs.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))


def stats(**states: str) -> str:
    return json.dumps({"name": "notify#producer-1", "brokers": {b: {"state": s} for b, s in states.items()}})


def test_a_burst_of_reconnect_failures_is_three_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    logs = ClientLogs(60.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="librdkafka"), capture_logs() as events:
        for _ in range(60):
            refused_attempt(logs)
            clock.now += 0.25
    expected_line = f"FAIL [notify#producer-1] [thrd:{BOOTSTRAP}]: {REFUSED}"
    assert [r.getMessage() for r in caplog.records] == [expected_line]
    assert [(e["event"], e["code"]) for e in events] == [
        ("kafka_client_error", "_TRANSPORT"),
        ("kafka_client_error", "_ALL_BROKERS_DOWN"),
    ]
    assert events[0]["client"] == "notify#producer-1"


def test_repeats_after_the_interval_are_one_summary_each(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    logs = ClientLogs(60.0, clock=clock)
    refused_attempt(logs)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="librdkafka"), capture_logs() as events:
        for _ in range(12):
            clock.now += 5.0
            refused_attempt(logs)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.endswith("(repeated 12 times in the last 60 s)")
    assert [(e["code"], e["repeated"], e["in_last_s"]) for e in events] == [
        ("_TRANSPORT", 12, 60),
        ("_ALL_BROKERS_DOWN", 12, 60),
    ]


def test_recovery_is_logged_once_when_a_broker_is_up() -> None:
    clock = FakeClock()
    logs = ClientLogs(60.0, clock=clock)
    for _ in range(4):
        refused_attempt(logs)
    clock.now += 12.0
    with capture_logs() as events:
        logs.stats(stats(**{BOOTSTRAP: "DOWN"}))  # still down: nothing
        # The bootstrap address is gone once the cluster's own broker is known, and that one is UP.
        logs.stats(stats(**{"127.0.0.1:9092/1": "UP"}))
        logs.stats(stats(**{"127.0.0.1:9092/1": "UP"}))
    [event] = events
    assert event["event"] == "kafka_client_recovered"
    assert event["conditions"] == [f"FAIL {BOOTSTRAP}", "_ALL_BROKERS_DOWN", f"_TRANSPORT {BOOTSTRAP}"]
    assert (event["failed_for_s"], event["occurrences"], event["unreported"]) == (12.0, 12, 9)

    with capture_logs() as events:
        refused_attempt(logs)  # down again: a state change, so news again
    assert len(events) == 2


def test_a_named_broker_recovers_only_when_it_is_up() -> None:
    logs = ClientLogs(60.0, clock=FakeClock())
    lost = "broker-2:9092/2: Connect to ipv4#10.0.0.2:9092 failed: Connection refused"
    logs.error(KafkaError(KafkaError._TRANSPORT, lost))
    with capture_logs() as events:
        logs.stats(stats(**{"broker-1:9092/1": "UP", "broker-2:9092/2": "CONNECT"}))
        assert events == []
        logs.stats(stats(**{"broker-1:9092/1": "UP", "broker-2:9092/2": "UP"}))
    assert [e["conditions"] for e in events] == [["_TRANSPORT broker-2:9092/2"]]


def test_conditions_a_broker_being_up_does_not_end_are_only_throttled() -> None:
    logs = ClientLogs(60.0, clock=FakeClock())
    logs.error(KafkaError(KafkaError._FATAL, "producer fenced"))
    with capture_logs() as events:
        logs.stats(stats(**{"127.0.0.1:9092/1": "UP"}))
        logs.error(KafkaError(KafkaError._FATAL, "producer fenced"))
    assert events == []


def test_stats_are_not_even_parsed_while_nothing_is_open() -> None:
    logs = ClientLogs(60.0, clock=FakeClock())
    logs.stats("not json")  # would raise if parsed: the common case costs nothing
    refused_attempt(logs)
    with capture_logs() as events:
        logs.stats("not json")  # and a bad payload is ignored, not raised into poll()
    assert events == []


def test_debug_and_info_lines_are_never_throttled(caplog: pytest.LogCaptureFixture) -> None:
    logs = ClientLogs(60.0, clock=FakeClock())
    with caplog.at_level(logging.DEBUG, logger="librdkafka"):
        for _ in range(3):
            logs.log(logging.DEBUG, "%s [%s] %s", "BROKER", "notify#producer-1", "state change")
            logs.log(logging.INFO, "%s [%s] %s", "CONFWARN", "notify#producer-1", "property ignored")
    assert len(caplog.records) == 6


@pytest.mark.parametrize(
    ("text", "broker"),
    [
        (f"[thrd:{BOOTSTRAP}]: {REFUSED}", BOOTSTRAP),
        (REFUSED, BOOTSTRAP),
        ("sasl_ssl://b-1.example.com:9096/3: SASL authentication error", "sasl_ssl://b-1.example.com:9096/3"),
        ("1/1 brokers are down", None),
        ("[thrd:main]: Topic x partition count changed", None),
    ],
)
def test_the_broker_is_read_from_the_head_of_the_text(text: str, broker: str | None) -> None:
    assert _broker(text) == broker

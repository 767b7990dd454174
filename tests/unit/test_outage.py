"""Riding out outages: which errors are outages, and one log line per state change."""

from __future__ import annotations

import random
from typing import Any

import psycopg
import pytest

from notify_core.exceptions import DatabaseError, KafkaError
from notify_core.outage import Outage, is_outage


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def wrapped(cause: BaseException) -> DatabaseError:
    try:
        raise DatabaseError("delivery log") from cause
    except DatabaseError as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (psycopg.OperationalError("server closed the connection"), True),
        (wrapped(psycopg.OperationalError("terminating connection")), True),
        (DatabaseError("cannot connect to PostgreSQL"), True),
        (wrapped(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")), False),
        (psycopg.DataError("NUL"), False),
        (KafkaError("producing", code="_MSG_TIMED_OUT"), True),
        (KafkaError("producing", code="_TRANSPORT"), True),
        (KafkaError("producing", code="MSG_SIZE_TOO_LARGE"), False),
        (TimeoutError(), True),
        (ValueError("bad target_ref"), False),
    ],
)
def test_outages_are_told_from_errors_of_the_record(exc: BaseException, outage: bool) -> None:
    """Only what would succeed once the server is back is retried; bad data is dead-lettered."""
    assert is_outage(exc) is outage


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() -> None:
    """A hundred failed attempts make two log lines, the second with how long it lasted."""
    now = [100.0]
    recorder = Recorder()
    outage = Outage("database", clock=lambda: now[0], rng=random.Random(1), logger=recorder)
    for _ in range(100):
        outage.failed(psycopg.OperationalError("gone"))
        now[0] += 0.5
    down_before = outage.down
    outage.ok()
    outage.ok()
    assert down_before
    assert [event for event, _ in recorder.lines] == ["database_unavailable", "database_recovered"]
    assert recorder.lines[1][1]["down_s"] == 50.0
    assert not outage.down
    assert outage.outages == 1


def test_the_delay_grows_with_jitter_and_stays_bounded() -> None:
    """Never zero, never in lock-step, never more than the cap."""
    outage = Outage("broker", base_s=0.2, max_s=5.0, rng=random.Random(7), logger=Recorder())
    delays = [outage.failed(RuntimeError("x")) for _ in range(30)]
    assert all(0.1 <= d <= 5.0 for d in delays)
    assert delays[0] <= 0.2
    assert max(delays[-5:]) > 2.5
    assert len(set(delays)) > 20

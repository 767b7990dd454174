"""The report's known scenario, as events the sink would have stored, and its exact figures.

The scenario (the report covers 2026-03-02 and 2026-03-03, late events read up to 30 days after):

- N1 (welcome, en): routed to IOS d1 and EMAIL d2, SMS suppressed (opted_out). d1 sent 200 ms after
  the request and opened twice; d2 retried once (that FAILED_RETRYING written twice, in two files),
  sent at 1500 ms, opened and clicked two days later; a click on d1 31 days later is past the window.
  d1's SENT is produced a second time, 700 ms later under a new event_id (a worker killed before its
  commit): still one send, at 200 ms.
- N2 (welcome, en): ANDROID d3 sent at 400 ms (its SENT written twice in one file), clicked, not
  opened; the request sent again and suppressed as a duplicate (no channel).
- N3 (receipt, de): EMAIL d4 failed permanently and dead-lettered (target deactivated).
- N4 (receipt, de): SMS d5 retried twice (attempts 1 and 2; attempt 2's FAILED_RETRYING produced again
  under a new event_id, so two retries, not three), then dead-lettered (attempts exhausted).
- N5 (receipt, de): suppressed whole (capped).
- N6 (welcome, en): IOS d6 routed a second before midnight and sent after it (1100 ms); EMAIL
  suppressed (no_contact).
- N7: routed and sent the day before the period, opened inside it: not the period's delivery.
- A file that is not Parquet sits in a date partition outside the window (``write_scenario``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analytics_sink.report_model import COUNTS, LATENCIES, RATES
from tests.report_events import at, ev, write_events

PERIOD = ["--from", "2026-03-02", "--to", "2026-03-03"]
WELCOME = {"service": "signup", "category": "account", "template_id": "welcome", "locale": "en"}
RECEIPT = {"service": "shop", "category": "billing", "template_id": "receipt", "locale": "de"}
RETRY_D2 = "0b5c7a4e-0000-4000-8000-0000000000d2"
SENT_D3 = "0b5c7a4e-0000-4000-8000-0000000000d3"


def router_event(
    kind: str, when: str, nid: str, base: dict[str, str], requested: str, **more: Any
) -> dict[str, Any]:
    """A router event: it carries the request's time (``requested_at``) and its template."""
    return ev(kind, when, nid, requested_at=at(requested), **base, **more)


def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events of partition 0, events of partition 1): the second holds a replayed copy."""
    w, r = WELCOME, RECEIPT
    n1, n2, n6 = "2026-03-02T10:00:00.000", "2026-03-02T12:00:00.000", "2026-03-03T23:59:59.000"
    first = [
        # N1
        router_event("ROUTED", "2026-03-02T10:00:00.050", "N1", w, n1, delivery_id="d1", channel="IOS"),
        router_event("ROUTED", "2026-03-02T10:00:00.050", "N1", w, n1, delivery_id="d2", channel="EMAIL"),
        router_event("SUPPRESSED", "2026-03-02T10:00:00.050", "N1", w, n1, channel="SMS", reason="opted_out"),
        ev("SENT", "2026-03-02T10:00:00.200", "N1", delivery_id="d1", channel="IOS", **w),
        ev("OPENED", "2026-03-02T10:05:00.000", "N1", delivery_id="d1", channel="IOS", **w),
        ev("OPENED", "2026-03-02T11:00:00.000", "N1", delivery_id="d1", channel="IOS", **w),
        ev(
            "FAILED_RETRYING",
            "2026-03-02T10:00:00.300",
            "N1",
            event_id=RETRY_D2,
            delivery_id="d2",
            attempt=1,
            **w,
        ),
        ev("SENT", "2026-03-02T10:00:01.500", "N1", delivery_id="d2", channel="EMAIL", attempt=2, **w),
        # d1's SENT produced again under a new event_id (a worker killed before its commit)
        ev("SENT", "2026-03-02T10:00:00.900", "N1", delivery_id="d1", channel="IOS", attempt=1, **w),
        ev("OPENED", "2026-03-04T08:00:00.000", "N1", delivery_id="d2", channel="EMAIL", **w),
        ev("CLICKED", "2026-03-04T08:01:00.000", "N1", delivery_id="d2", channel="EMAIL", **w),
        ev("CLICKED", "2026-04-03T09:00:00.000", "N1", delivery_id="d1", channel="IOS", **w),
        # N2
        router_event("ROUTED", "2026-03-02T12:00:00.010", "N2", w, n2, delivery_id="d3", channel="ANDROID"),
        ev("SENT", "2026-03-02T12:00:00.400", "N2", event_id=SENT_D3, delivery_id="d3", channel="ANDROID"),
        ev("SENT", "2026-03-02T12:00:00.400", "N2", event_id=SENT_D3, delivery_id="d3", channel="ANDROID"),
        ev("CLICKED", "2026-03-02T12:30:00.000", "N2", delivery_id="d3", channel="ANDROID", **w),
        router_event("SUPPRESSED", "2026-03-02T12:05:00.000", "N2", w, n2, reason="duplicate"),
        # N3
        router_event(
            "ROUTED",
            "2026-03-03T09:00:00.020",
            "N3",
            r,
            "2026-03-03T09:00:00",
            delivery_id="d4",
            channel="EMAIL",
        ),
        ev(
            "FAILED_PERMANENT",
            "2026-03-03T09:00:00.500",
            "N3",
            delivery_id="d4",
            reason="mailbox_unknown",
            **r,
        ),
        ev("DEAD_LETTERED", "2026-03-03T09:00:00.510", "N3", delivery_id="d4", **r),
        ev("TARGET_DEACTIVATED", "2026-03-03T09:00:00.520", "N3", delivery_id="d4", **r),
        # N4
        router_event(
            "ROUTED",
            "2026-03-03T09:30:00.020",
            "N4",
            r,
            "2026-03-03T09:30:00",
            delivery_id="d5",
            channel="SMS",
        ),
        ev(
            "FAILED_RETRYING",
            "2026-03-03T09:30:01.000",
            "N4",
            delivery_id="d5",
            channel="SMS",
            attempt=1,
            **r,
        ),
        ev(
            "FAILED_RETRYING",
            "2026-03-03T09:30:11.000",
            "N4",
            delivery_id="d5",
            channel="SMS",
            attempt=2,
            **r,
        ),
        # attempt 2's FAILED_RETRYING produced again under a new event_id
        ev(
            "FAILED_RETRYING",
            "2026-03-03T09:30:11.200",
            "N4",
            delivery_id="d5",
            channel="SMS",
            attempt=2,
            **r,
        ),
        ev("DEAD_LETTERED", "2026-03-03T09:35:00.000", "N4", delivery_id="d5", channel="SMS", **r),
        # N5
        router_event(
            "SUPPRESSED", "2026-03-03T10:00:00.010", "N5", r, "2026-03-03T10:00:00", reason="capped"
        ),
        # N6
        router_event("ROUTED", "2026-03-03T23:59:59.500", "N6", w, n6, delivery_id="d6", channel="IOS"),
        router_event(
            "SUPPRESSED", "2026-03-03T23:59:59.500", "N6", w, n6, channel="EMAIL", reason="no_contact"
        ),
        ev("SENT", "2026-03-04T00:00:00.100", "N6", delivery_id="d6", channel="IOS", **w),
        # N7, before the period
        router_event(
            "ROUTED", "2026-03-01T10:00:00.000", "N7", w, "2026-03-01T10:00", delivery_id="d7", channel="IOS"
        ),
        ev("SENT", "2026-03-01T10:00:00.300", "N7", delivery_id="d7", channel="IOS", **w),
        ev("OPENED", "2026-03-03T07:00:00.000", "N7", delivery_id="d7", channel="IOS", **w),
    ]
    replayed = [
        ev(
            "FAILED_RETRYING",
            "2026-03-02T10:00:00.300",
            "N1",
            event_id=RETRY_D2,
            delivery_id="d2",
            attempt=1,
            **w,
        )
    ]
    return first, replayed


def write_scenario(root: Path) -> None:
    """The scenario's files under ``root``, the replayed copy in a second topic partition's file,
    and a file that is not Parquet in a date partition outside the window (reading it would fail)."""
    first, replayed = scenario()
    write_events(str(root), first, partition=0, first_offset=100)
    write_events(str(root), replayed, partition=1, first_offset=7)
    stray = root / "date=2026-02-27"
    stray.mkdir(parents=True)
    (stray / f"notifications.events+0+{0:020d}.parquet").write_bytes(b"not parquet at all")


Row = tuple[str | None, tuple[int, ...], tuple[float | None, ...], tuple[float | None, ...], dict[str, int]]


def expected(dimension: str, rows: list[Row]) -> list[dict[str, Any]]:
    """The report's JSON groups for ``rows`` of (group value, counts, rates, p50/p95, reasons)."""
    return [
        {
            dimension: value,
            **dict(zip(COUNTS, counts, strict=True)),
            **dict(zip(RATES, rates, strict=True)),
            **dict(zip(LATENCIES, latencies, strict=True)),
            "suppressed_by_reason": reasons,
        }
        for value, counts, rates, latencies, reasons in rows
    ]


# Worked out by hand from the scenario above. Percentiles interpolate: IOS has [200, 1100] ms, so
# p50 = 650 and p95 = 200 + 0.95 * 900 = 1055; welcome has [200, 400, 1100, 1500], so p50 = 750
# and p95 = 1100 + 0.85 * 400 = 1440.
# fmt: off
#            requested, routed, suppressed, sent, retried, failed, dead_lettered, opened, clicked
BY_CHANNEL = expected("channel", [
    ("ANDROID", (1, 1, 0, 1, 0, 0, 0, 0, 1), (1.0, 0.0, 1.0), (400.0, 400.0), {}),
    ("EMAIL", (3, 2, 1, 1, 1, 1, 1, 1, 1), (0.5, 1.0, 1.0), (1500.0, 1500.0), {"no_contact": 1}),
    ("IOS", (2, 2, 0, 2, 0, 0, 0, 1, 0), (1.0, 0.5, 0.0), (650.0, 1055.0), {}),
    ("SMS", (2, 1, 1, 0, 2, 0, 1, 0, 0), (0.0, None, None), (None, None), {"opted_out": 1}),
    (None, (2, 0, 2, 0, 0, 0, 0, 0, 0), (None, None, None), (None, None), {"capped": 1, "duplicate": 1}),
])
BY_TEMPLATE = expected("template", [
    ("receipt", (3, 2, 1, 0, 2, 1, 2, 0, 0), (0.0, None, None), (None, None), {"capped": 1}),
    ("welcome", (3, 4, 3, 4, 1, 0, 0, 2, 2), (1.0, 0.5, 0.5), (750.0, 1440.0),
     {"duplicate": 1, "no_contact": 1, "opted_out": 1}),
])
# fmt: on

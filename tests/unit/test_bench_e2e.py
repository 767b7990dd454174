"""Pure helpers of ``notify bench e2e``: the open-loop schedule, latency and drain figures, probing."""

from __future__ import annotations

import argparse

import pytest

from notify_cli import bench_e2e
from notify_cli.bench_e2e import (
    drain_figures,
    latency_figures,
    probe_rates,
    probes_downwards,
    request,
    schedule,
)
from notify_core.topics import Channel
from sandboxes.process import Receipt


def test_the_schedule_is_evenly_spaced_at_the_rate() -> None:
    instants = schedule(200, 2.5)
    assert len(instants) == 500
    assert instants[0] == 0.0
    assert instants[1] == pytest.approx(0.005)
    assert instants[-1] == pytest.approx(499 / 200)
    assert schedule(3, 0.1) == []


def test_latency_is_arrival_minus_marker_within_the_window_per_channel() -> None:
    receipts = {
        Channel.IOS: [Receipt("a", 10.1, "ok", 10.0), Receipt("b", 10.5, "ok", 10.2)],
        Channel.EMAIL: [
            Receipt("c", 11.0, "ok", 10.0),
            Receipt("d", 5.0, "ok", 4.9),  # an earlier phase
            Receipt("e", 11.0, "ok", None),  # no marker found
        ],
        Channel.SMS: [],
    }
    figures = latency_figures(receipts, since=9.0, until=12.0)
    assert figures["received"] == 3
    assert figures["latency"]["max_ms"] == pytest.approx(1000.0)
    assert figures["latency"]["p50_ms"] == pytest.approx(300.0)
    assert figures["p99_ms_per_channel"] == {"ios": pytest.approx(300.0), "email": 1000.0, "sms": None}
    assert latency_figures({Channel.IOS: []}, 0, 1)["latency"] is None


def test_drain_counts_from_the_start_to_the_last_receipt_of_the_backlog() -> None:
    receipts = {
        Channel.IOS: [
            Receipt("old", 1.0, "ok", 0.5),
            *(Receipt("a", 100.0 + i, "ok", 99.0) for i in range(1, 5)),
        ],
        Channel.SMS: [Receipt("b", 102.0, "ok", 99.0)],
    }
    figures = drain_figures(receipts, since=99.0, began=100.0)
    assert figures["received"] == 5
    assert figures["seconds"] == 4.0
    assert figures["first_receipt_s"] == 1.0
    assert figures["requests_per_s"] == round(5 / 4)
    assert figures["deliveries_per_s"] == {"ios": 1, "sms": round(1 / 2)}


def test_probing_doubles_from_a_passing_top_rate_and_halves_when_nothing_passed() -> None:
    """Upwards from a top rate that passed; downwards from the lowest when none did, not below 25/s;
    between the best pass and the failure above it otherwise, downwards."""
    assert probe_rates([200, 500, 1000], [200, 500, 1000]) == [2000, 4000]
    assert probe_rates([100, 300], [100, 300]) == [600, 1200, 2400]
    assert probe_rates([200], [200, 500]) == [425, 350, 275]
    assert probe_rates([200], [200, 500, 1000]) == [425, 350, 275]
    assert probe_rates([200], [200, 202]) == [201]
    assert probe_rates([], [200, 500]) == [100, 50, 25]
    assert probe_rates([], [60]) == [30]
    assert probe_rates([], []) == []
    assert not probes_downwards([200, 500], [200, 500])
    assert probes_downwards([200], [200, 500])
    assert probes_downwards([], [200])


def test_requests_go_round_robin_over_the_channels_with_the_marker() -> None:
    sent = [request(i, users=10, marker=12.5) for i in range(8)]
    assert [r["channels"] for r in sent[:4]] == [["ios"], ["android"], ["sms"], ["email"]]
    assert sent[4]["channels"] == ["ios"]
    assert sent[0]["params"] == {"t": "12.500000"}
    assert {r["user_id"] for r in sent} == {f"user-{i}" for i in range(8)}


def test_the_kind_parses_its_options() -> None:
    parser = argparse.ArgumentParser()
    bench_e2e.register_kind(parser.add_subparsers(dest="kind"))
    args = parser.parse_args(["e2e", "--rates", "100,300", "--seconds", "5", "--scale-count", "3000"])
    assert (args.rates, args.seconds, args.catchup, args.scale_count, args.users) == (
        "100,300",
        5.0,
        100_000,
        3000,
        2000,
    )
    assert args.handler is bench_e2e.run

"""The report's pure parts: ``--by`` and the period, the SQL file's statements and parameters, which
date partitions are read, and the CSV/JSON/table renderings of known figures."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest

from analytics_sink.report_format import render, to_csv, to_json, to_table
from analytics_sink.report_model import DIMENSIONS, Figures, Period, Report, group_parameters, parse_by
from analytics_sink.report_query import LOADS, bind, report_sql, statements
from analytics_sink.report_source import days_wanted, locate
from notify_cli.report_cmd import period_of
from notify_core.exceptions import ConfigError
from notify_core.settings import Settings

PERIOD = Period(date(2026, 3, 2), date(2026, 3, 3))


def test_by_keeps_known_dimensions_in_order_once() -> None:
    """``--by`` is split on commas, keeps the order given, drops repeats and blanks."""
    assert parse_by("template, channel,template,") == ("template", "channel")


@pytest.mark.parametrize("text", ["user_id", "channel;drop table events", "", " , "])
def test_by_refuses_anything_else(text: str) -> None:
    """Any name outside the closed list (or none at all) is refused, so nothing else reaches SQL."""
    with pytest.raises(ValueError, match="channel, template, category, service, locale, day"):
        parse_by(text)


def test_group_parameters_are_one_boolean_per_dimension() -> None:
    """The SQL gets a true/false for every dimension, true only for those asked for."""
    assert group_parameters(("channel", "day")) == {
        "by_channel": True,
        "by_template": False,
        "by_category": False,
        "by_service": False,
        "by_locale": False,
        "by_day": True,
    }


def test_the_period_reads_a_late_window_after_its_last_day() -> None:
    """Later events are read from the day before ``--from`` (a worker clock a little behind) to
    ``late_days`` after ``--to``; a period ending before it starts is refused."""
    assert (PERIOD.read_from, PERIOD.read_until) == (date(2026, 3, 1), date(2026, 4, 2))
    assert Period(date(2026, 3, 2), date(2026, 3, 2), late_days=0).read_until == date(2026, 3, 2)
    with pytest.raises(ValueError, match="before"):
        Period(date(2026, 3, 3), date(2026, 3, 2))


def test_the_default_period_is_the_last_seven_days() -> None:
    """Without ``--from`` and ``--to`` the report covers today and the six days before it."""
    today = date(2026, 3, 10)
    assert period_of(None, None, 30, today=today) == Period(date(2026, 3, 4), today, 30)
    assert period_of(None, date(2026, 3, 5), 3, today=today) == Period(date(2026, 2, 27), date(2026, 3, 5), 3)


def test_named_statements_are_split_and_header_left_out() -> None:
    """A SQL file's ``-- name:`` lines start statements; the header before the first is not one."""
    text = "-- about\n\n-- name: one\nSELECT 1;\n\n-- name: two\n-- why\nSELECT $a;\n"
    assert statements(text) == {"one": "SELECT 1;", "two": "-- why\nSELECT $a;"}
    with pytest.raises(ValueError, match="twice"):
        statements("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n")


def test_bind_passes_only_the_parameters_a_statement_uses() -> None:
    """DuckDB refuses extra parameters, so each statement gets exactly those it names outside comments."""
    values = {"a": 1, "b": 2, "c": 3}
    assert bind("-- mentions $c\nSELECT $a + $b, $a", values) == {"a": 1, "b": 2}
    with pytest.raises(KeyError):
        bind("SELECT $missing", values)


def test_report_sql_statements_use_only_supplied_parameters() -> None:
    """Every statement of ``report.sql`` runs with what the period and ``--by`` supply, and the file
    has no placeholder Python would format into it."""
    sql = report_sql()
    assert set(sql) == {*LOADS, "load_facts", "figures", "suppressions"}
    supplied = {**PERIOD.parameters(), **group_parameters(tuple(DIMENSIONS))}
    for statement in sql.values():
        bind(statement, supplied)
        assert "{" not in statement


def test_only_date_directories_inside_the_window_are_read() -> None:
    """Of a root's entries, only ``date=`` directories from the first to the last day are kept."""
    names = [
        "date=2026-03-01",
        "date=2026-03-03",
        "date=2026-03-02",
        "date=2026-04-03",
        "_manifests",
        "date=2026-02-30",
        "date=x",
    ]
    assert days_wanted(names, date(2026, 3, 2), date(2026, 4, 2)) == ["date=2026-03-02", "date=2026-03-03"]


def test_sources_are_directories_file_urls_or_s3() -> None:
    """A path or ``file://`` URL is local, ``s3://bucket/prefix`` is bucket and prefix; other schemes
    and a bucketless S3 URL are refused."""
    settings = Settings()
    assert locate("/data/analytics", settings).root == "/data/analytics"
    assert locate("file:///data/an%20alytics", settings).root == "/data/an alytics"
    assert locate("s3://bucket/events/", settings).root == "bucket/events"
    for bad in ("s3:///events", "gs://bucket/events"):
        with pytest.raises(ConfigError):
            locate(bad, settings)


def _report() -> Report:
    figures = Figures(
        group={"channel": "EMAIL", "template": None},
        requested=3,
        routed=2,
        suppressed=1,
        sent=1,
        retried=1,
        failed=1,
        dead_lettered=1,
        opened=1,
        clicked=0,
        delivery_rate=0.5,
        open_rate=1.0,
        click_rate=0.0,
        p50_request_to_send_ms=1500.0,
        p95_request_to_send_ms=None,
        suppressed_by_reason={"opted_out": 1},
    )
    return Report(PERIOD, ("channel", "template"), (figures,))


def test_json_has_the_period_and_exact_figures() -> None:
    """JSON carries the period, the grouping and each figure as computed (None as null)."""
    document = json.loads(to_json(_report()))
    assert (document["from"], document["to"], document["read_until"], document["late_days"]) == (
        "2026-03-02",
        "2026-03-03",
        "2026-04-02",
        30,
    )
    assert document["groups"] == [_report().groups[0].as_dict()]
    assert document["groups"][0]["p95_request_to_send_ms"] is None


def test_csv_has_a_column_per_reason_and_empty_cells_for_nothing() -> None:
    """CSV has the group columns, the figures and ``suppressed:<reason>``; None is an empty cell."""
    (row,) = csv.DictReader(io.StringIO(to_csv(_report())))
    assert row["channel"] == "EMAIL"
    assert row["template"] == ""
    assert (row["delivery_rate"], row["p95_request_to_send_ms"], row["suppressed:opted_out"]) == (
        "0.5",
        "",
        "1",
    )


def test_the_table_is_aligned_with_percentages() -> None:
    """The table shows a missing group value as (none), rates as percentages, nothing as ``-``."""
    title, header, line = to_table(_report()).splitlines()
    assert title.startswith("notify report 2026-03-02..2026-03-03 by channel, template")
    assert header.split()[:3] == ["channel", "template", "requested"]
    assert line.split() == [
        "EMAIL", "(none)", "3", "2", "1", "1", "1", "1", "1", "1", "0", "50.00%", "100.00%", "0.00%",
        "1500.0", "-", "opted_out=1",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown format"):
        render(_report(), "xml")

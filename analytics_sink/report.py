"""``notify report`` end to end: open the sink's files, run the SQL, render, chart.

The pieces: ``report_source`` (which files, as a pyarrow dataset, local or S3), ``report.sql`` run by
``report_query`` (DuckDB), ``report_model`` (the figures), ``report_format`` (table, CSV, JSON) and
``report_plot`` (the PNG). This module ties them together for the CLI and the demo, and is the one
place where foreign errors (DuckDB's, pyarrow's, the filesystem's) become ``ReportError``::

    NotifyError (notify_core.exceptions)
    └── ReportError                  the files could not be read or queried
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]  # pyarrow ships no type information

from analytics_sink.report_model import Period, Report
from analytics_sink.report_query import ReportQuery
from analytics_sink.report_source import locate, open_events
from notify_core.exceptions import NotifyError
from notify_core.settings import Settings


class ReportError(NotifyError):
    """The Parquet files could not be listed, read or queried (the message says which and why)."""


@dataclass(frozen=True)
class Outcome:
    report: Report
    events: int  # distinct events read: the period and its late window
    chart: Path | None


def make_report(
    source: str, settings: Settings, period: Period, by: Sequence[str], *, chart: Path | None = None
) -> Outcome:
    """The figures of ``period`` grouped ``by``, from the files under ``source`` (a directory or
    ``s3://bucket/prefix``); with ``chart``, also the PNG of the funnel per channel and the rates
    per day written there."""
    location = locate(source, settings)
    try:
        dataset = open_events(location, period.read_from, period.read_until)
        with ReportQuery(dataset, period) as query:
            report = query.report(by)
            if chart is not None:
                # matplotlib takes half a second to import: only a run that draws pays for it.
                from analytics_sink.report_plot import plot

                plot(chart, period, query.figures(("channel",)), query.figures(("day",)))
            return Outcome(report, query.event_count(), chart)
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        raise ReportError(f"report over {source}: {exc}") from exc

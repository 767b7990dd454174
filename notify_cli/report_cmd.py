"""``notify report``: delivery, open and click figures from the analytics sink's Parquet files.

``--from``/``--to`` are UTC dates, both included (default: the last seven days up to today);
``--by`` any of channel, template, category, service, locale, day (default channel);
``--late-days`` how long after ``--to`` the sends, opens and clicks of the period's deliveries are
looked for (default 30). The report goes to stdout; ``--plot`` also writes the PNG chart.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from analytics_sink.report_format import FORMATS, render
from analytics_sink.report_model import DEFAULT_LATE_DAYS, DIMENSIONS, Period, parse_by
from notify_core.settings import Settings

DEFAULT_DAYS = 7


def register(commands: Any) -> None:
    parser = commands.add_parser("report", help="delivery, open and click figures from the Parquet files")
    parser.add_argument(
        "--source",
        help="a directory or s3://bucket/prefix (default: NOTIFY_SINK_OUTPUT, else .cache/analytics)",
    )
    parser.add_argument("--from", dest="first_day", type=_day, help="first UTC date, YYYY-MM-DD")
    parser.add_argument("--to", dest="last_day", type=_day, help="last UTC date, YYYY-MM-DD (included)")
    parser.add_argument(
        "--by",
        type=_by,
        default=("channel",),
        help=f"comma-separated: {', '.join(DIMENSIONS)} (default channel)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="default table")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="also write the chart as a PNG")
    parser.add_argument(
        "--late-days",
        type=int,
        default=DEFAULT_LATE_DAYS,
        help=f"days after --to in which late events are looked for (default {DEFAULT_LATE_DAYS})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        period = period_of(args.first_day, args.last_day, args.late_days, today=datetime.now(UTC).date())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # DuckDB and pyarrow load here, not when `notify` builds its parser for every other command.
    from analytics_sink.report import make_report

    source = args.source or settings.sink_location()
    outcome = make_report(source, settings, period, args.by, chart=args.plot)
    sys.stdout.write(render(outcome.report, args.format))
    print(f"{outcome.events} events read from {source}", file=sys.stderr)
    if outcome.chart is not None:
        print(f"chart written to {outcome.chart}", file=sys.stderr)
    return 0


def period_of(first: date | None, last: date | None, late_days: int, *, today: date) -> Period:
    """The period the options ask for: ``--to`` defaults to today, ``--from`` to six days before it."""
    last_day = last or today
    first_day = first or last_day - timedelta(days=DEFAULT_DAYS - 1)
    return Period(first_day, last_day, late_days)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _by(text: str) -> tuple[str, ...]:
    try:
        return parse_by(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

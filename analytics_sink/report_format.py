"""The report as text: a terminal table, CSV or JSON (pure).

JSON and CSV carry the exact figures: counts as integers, rates as the fractions the SQL rounded to
4 decimals, percentiles in milliseconds as computed; an absent value (a rate over zero, a group
without a value) is ``null`` in JSON and an empty cell in CSV. The table is for people: rates as
percentages with two decimals, percentiles to a tenth of a millisecond, ``-`` for nothing.

CSV has one column per suppression reason seen in the report, ``suppressed:<reason>``; JSON has
``suppressed_by_reason`` as an object, and the period it covers alongside the groups.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from analytics_sink.report_model import COUNTS, LATENCIES, RATES, Report

FORMATS = ("table", "csv", "json")
_HEADINGS = {
    "dead_lettered": "dead",
    "delivery_rate": "delivery",
    "open_rate": "open",
    "click_rate": "click",
    "p50_request_to_send_ms": "p50 ms",
    "p95_request_to_send_ms": "p95 ms",
}
NO_GROUP = "(none)"


def render(report: Report, kind: str) -> str:
    """``report`` in one of ``FORMATS``."""
    if kind == "json":
        return to_json(report)
    if kind == "csv":
        return to_csv(report)
    if kind == "table":
        return to_table(report)
    raise ValueError(f"unknown format {kind!r}: choose from {', '.join(FORMATS)}")


def to_json(report: Report) -> str:
    period = report.period
    document = {
        "from": period.first_day.isoformat(),
        "to": period.last_day.isoformat(),
        "late_days": period.late_days,
        "read_until": period.read_until.isoformat(),
        "by": list(report.by),
        "groups": [group.as_dict() for group in report.groups],
    }
    return json.dumps(document, indent=2)


def csv_columns(report: Report) -> list[str]:
    return [
        *report.by,
        *COUNTS,
        *RATES,
        *LATENCIES,
        *(f"suppressed:{reason}" for reason in report.reasons()),
    ]


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_columns(report))
    for group in report.groups:
        values = group.as_dict()
        by_reason = values.pop("suppressed_by_reason")
        row: list[Any] = [values[name] for name in (*report.by, *COUNTS, *RATES, *LATENCIES)]
        row += [by_reason.get(reason, 0) for reason in report.reasons()]
        writer.writerow(["" if value is None else value for value in row])
    return out.getvalue()


def to_table(report: Report) -> str:
    period = report.period
    title = (
        f"notify report {period.first_day}..{period.last_day} by {', '.join(report.by)}"
        f" (later events read up to {period.read_until})"
    )
    names = [*report.by, *COUNTS, *RATES, *LATENCIES]
    header = [*report.by, *(_HEADINGS.get(name, name) for name in names[len(report.by) :])]
    header.append("suppressed by reason")
    rows = []
    for group in report.groups:
        values = group.as_dict()
        cells = [NO_GROUP if values[name] is None else str(values[name]) for name in report.by]
        cells += [str(values[name]) for name in COUNTS]
        cells += [_percent(values[name]) for name in RATES]
        cells += [_ms(values[name]) for name in LATENCIES]
        cells.append(" ".join(f"{r}={n}" for r, n in sorted(group.suppressed_by_reason.items())) or "-")
        rows.append(cells)
    if not rows:
        return f"{title}\nno events in this period\n"
    return f"{title}\n{_aligned([header, *rows], text_columns=len(report.by))}"


def _aligned(rows: Sequence[Sequence[str]], *, text_columns: int) -> str:
    """Columns padded to their widest cell: the group values and the reasons left, numbers right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    last = len(widths) - 1
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i < text_columns or i == last else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"

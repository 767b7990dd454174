"""Runs ``report.sql`` with DuckDB over the events dataset (I/O around pure statement handling).

``report.sql`` is a sequence of named statements (``-- name: <name>`` on a line of its own). A
``ReportQuery`` registers the pyarrow dataset as ``raw_events`` (DuckDB scans it in place, pushing
column selection and the ``date``/``occurred_at`` filters down to the Parquet reader), runs the
``load_*`` statements once for the period, then answers ``figures(by)`` for as many groupings as
asked (the table, and the chart's per-channel and per-day views) without reading the files again.

Only parameters are bound: dates, and a boolean per ``--by`` dimension from the closed list in
``report_model.DIMENSIONS``. No SQL text is built from input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from types import TracebackType
from typing import Any

import duckdb

from analytics_sink.report_model import Figures, Period, Report, assemble, group_parameters
from notify_core.resources import package_dir

SQL_FILE = "report.sql"
LOADS = ("load_events", "load_decisions", "load_deliveries")
_NAME = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)
_PARAMETER = re.compile(r"\$([a-z_]+)")
_COMMENT = re.compile(r"--[^\n]*")  # the statements hold no string literal with "--" in it


def statements(text: str) -> dict[str, str]:
    """The named statements of a SQL file: each runs from its ``-- name:`` line to the next one
    (the file's header before the first name is documentation only)."""
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in named:
            raise ValueError(f"{SQL_FILE}: statement {name!r} is defined twice")
        named[name] = body.strip()
    return named


def bind(statement: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the ``$parameters`` that ``statement`` uses (DuckDB refuses extra ones);
    KeyError names one it uses that ``values`` lacks."""
    used = set(_PARAMETER.findall(_COMMENT.sub("", statement)))
    return {name: values[name] for name in sorted(used)}


@cache
def report_sql() -> dict[str, str]:
    """``report.sql``'s statements, read from the installed package."""
    return statements((package_dir("analytics_sink") / SQL_FILE).read_text(encoding="utf-8"))


class ReportQuery:
    """A DuckDB session holding one period's events, deduplicated. Also a context manager."""

    def __init__(self, dataset: Any, period: Period, *, sql: Mapping[str, str] | None = None) -> None:
        self.period = period
        self._sql = dict(sql if sql is not None else report_sql())
        self._connection = duckdb.connect()
        # deliver_at is read as TIMESTAMPTZ and turned to UTC explicitly; this keeps any other
        # conversion from depending on the machine's zone.
        self._connection.execute("SET TimeZone = 'UTC'")
        self._connection.register("raw_events", dataset)
        for name in LOADS:
            self._run(name, period.parameters())

    def figures(self, by: Sequence[str]) -> tuple[Figures, ...]:
        """Every group's figures for ``by`` (dimensions from ``report_model.parse_by``)."""
        values = {**self.period.parameters(), **group_parameters(by)}
        self._run("load_facts", values)
        return assemble(by, self._rows("figures", values), self._rows("suppressions", values))

    def report(self, by: Sequence[str]) -> Report:
        return Report(self.period, tuple(by), self.figures(by))

    def event_count(self) -> int:
        """How many distinct events were read (the period and its late window)."""
        row = self._connection.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row is not None else 0

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ReportQuery:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, name: str, values: Mapping[str, Any]) -> None:
        statement = self._sql[name]
        self._connection.execute(statement, bind(statement, values))

    def _rows(self, name: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        statement = self._sql[name]
        cursor = self._connection.execute(statement, bind(statement, values))
        columns = [column[0] for column in cursor.description or ()]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

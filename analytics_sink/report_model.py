"""The report's values: the period, the ``--by`` dimensions and each group's figures (pure).

What each figure means is in ``report.sql`` and the README's "The report"; this module only names
them, checks ``--by`` against the dimensions the SQL knows, and assembles the SQL's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

# --by name -> the SQL's boolean parameter and the group column it fills. A closed list: only these
# names ever reach the SQL, and only as a true/false parameter.
DIMENSIONS: dict[str, tuple[str, str]] = {
    "channel": ("by_channel", "g_channel"),
    "template": ("by_template", "g_template"),
    "category": ("by_category", "g_category"),
    "service": ("by_service", "g_service"),
    "locale": ("by_locale", "g_locale"),
    "day": ("by_day", "g_day"),
}
COUNTS = (
    "requested",
    "routed",
    "suppressed",
    "sent",
    "retried",
    "failed",
    "dead_lettered",
    "opened",
    "clicked",
)
RATES = ("delivery_rate", "open_rate", "click_rate")
LATENCIES = ("p50_request_to_send_ms", "p95_request_to_send_ms")
DEFAULT_LATE_DAYS = 30


@dataclass(frozen=True)
class Period:
    """Deliveries and decisions from ``first_day`` to ``last_day`` (inclusive, UTC), and what
    happened to those deliveries up to ``late_days`` days after ``last_day``."""

    first_day: date
    last_day: date
    late_days: int = DEFAULT_LATE_DAYS

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise ValueError(f"--to {self.last_day} is before --from {self.first_day}")
        if self.late_days < 0:
            raise ValueError("the late window cannot be negative")

    @property
    def read_from(self) -> date:
        """The first date partition read: the day before ``first_day``, where a later event of a
        delivery routed just after midnight lands when its worker's clock is a little behind."""
        return self.first_day - timedelta(days=1)

    @property
    def read_until(self) -> date:
        """The last date partition read."""
        return self.last_day + timedelta(days=self.late_days)

    def parameters(self) -> dict[str, Any]:
        return {
            "first_day": self.first_day,
            "last_day": self.last_day,
            "read_from": self.read_from,
            "read_until": self.read_until,
        }


@dataclass(frozen=True)
class Figures:
    """One group's figures. ``group`` maps each ``--by`` dimension to its value (None: no value,
    e.g. the whole-request suppressions under ``channel``, or v1 events under ``template``)."""

    group: dict[str, str | None]
    requested: int
    routed: int
    suppressed: int
    sent: int
    retried: int
    failed: int
    dead_lettered: int
    opened: int
    clicked: int
    delivery_rate: float | None
    open_rate: float | None
    click_rate: float | None
    p50_request_to_send_ms: float | None
    p95_request_to_send_ms: float | None
    suppressed_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The group's values, then every figure, in the report's column order."""
        out: dict[str, Any] = dict(self.group)
        for name in (*COUNTS, *RATES, *LATENCIES):
            out[name] = getattr(self, name)
        out["suppressed_by_reason"] = dict(self.suppressed_by_reason)
        return out


@dataclass(frozen=True)
class Report:
    period: Period
    by: tuple[str, ...]
    groups: tuple[Figures, ...]

    def reasons(self) -> list[str]:
        """Every suppression reason seen, sorted."""
        return sorted({reason for g in self.groups for reason in g.suppressed_by_reason})


def parse_by(text: str) -> tuple[str, ...]:
    """``channel,template`` as a tuple of known dimensions, in order, each once; ValueError names
    an unknown one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("--by needs at least one of " + ", ".join(DIMENSIONS))
    unknown = [name for name in names if name not in DIMENSIONS]
    if unknown:
        raise ValueError(f"cannot group by {', '.join(unknown)}: choose from {', '.join(DIMENSIONS)}")
    return tuple(dict.fromkeys(names))


def group_parameters(by: Sequence[str]) -> dict[str, bool]:
    """The SQL's ``$by_*`` parameters for ``by``: true for each dimension asked for."""
    return {parameter: name in by for name, (parameter, _) in DIMENSIONS.items()}


def assemble(
    by: Sequence[str], figure_rows: Iterable[Mapping[str, Any]], suppression_rows: Iterable[Mapping[str, Any]]
) -> tuple[Figures, ...]:
    """The ``figures`` rows, each with its group's ``suppressions`` rows as ``suppressed_by_reason``."""
    columns = [column for _, column in DIMENSIONS.values()]
    reasons: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in suppression_rows:
        reasons.setdefault(tuple(row[c] for c in columns), {})[str(row["reason"])] = int(row["suppressed"])
    groups = []
    for row in figure_rows:
        key = tuple(row[c] for c in columns)
        values: dict[str, Any] = {name: int(row[name]) for name in COUNTS}
        values.update({name: _number(row[name]) for name in (*RATES, *LATENCIES)})
        group = {name: _text(row[DIMENSIONS[name][1]]) for name in by}
        groups.append(Figures(group=group, suppressed_by_reason=reasons.get(key, {}), **values))
    return tuple(groups)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)

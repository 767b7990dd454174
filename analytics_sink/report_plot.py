"""``notify report --plot FILE.png``: the funnel per channel and the rates per day (matplotlib).

Drawn on matplotlib's Agg canvas directly (no pyplot, so no GUI backend and no global figure
state): on the left, for each channel, its deliveries routed, sent, opened and clicked; on the
right, the delivery, open and click-through rates of each day of the period (a day without a rate is a
gap in its line). The figures are the report's own (``ReportQuery.figures``), so the chart and the
table always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analytics_sink.report_format import NO_GROUP
from analytics_sink.report_model import Figures, Period

FUNNEL = ("routed", "sent", "opened", "clicked")
# (figure, label, line style): distinct styles, so that equal rates drawn over each other still show.
RATE_LINES = (
    ("delivery_rate", "delivery", "o-"),
    ("open_rate", "open", "s--"),
    ("click_rate", "click-through", "^:"),
)
_BAR_WIDTH = 0.8 / len(FUNNEL)


def plot(path: Path, period: Period, by_channel: Sequence[Figures], by_day: Sequence[Figures]) -> Path:
    """Write the chart as a PNG to ``path``; ``by_channel`` and ``by_day`` are the figures grouped
    by ``channel`` and by ``day``."""
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    funnel, rates = figure.subplots(1, 2)
    routed = [group for group in by_channel if group.routed]  # whole-request suppressions have none
    channels = [group.group.get("channel") or NO_GROUP for group in routed]
    positions = range(len(routed))
    for step, name in enumerate(FUNNEL):
        offset = (step - (len(FUNNEL) - 1) / 2) * _BAR_WIDTH
        counts = [getattr(group, name) for group in routed]
        funnel.bar([p + offset for p in positions], counts, _BAR_WIDTH, label=name)
    funnel.set_xticks(list(positions), channels)
    funnel.set_ylabel("deliveries")
    funnel.yaxis.set_major_locator(MaxNLocator(integer=True))
    funnel.set_title("Funnel per channel")
    funnel.legend()

    days = [group.group.get("day") or "" for group in by_day]
    for name, label, style in RATE_LINES:
        values = [_or_nan(getattr(group, name)) for group in by_day]
        rates.plot(days, values, style, label=label)
    rates.set_ylim(0, 1.05)
    rates.set_ylabel("rate")
    rates.set_title("Rates per day (by the day each delivery was routed)")
    rates.tick_params(axis="x", labelrotation=45)
    rates.legend()
    figure.suptitle(f"notify report {period.first_day} .. {period.last_day}")
    figure.savefig(path, format="png", dpi=100)
    return path


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value

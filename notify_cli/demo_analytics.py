"""The demo's analytics step: the sink writes the events of the run to Parquet, and the report
reads them back with DuckDB, per channel, with the open and click rates the API tour produced.

The sink runs in burst mode in its consumer group (``sink_group``), so a second demo adds only the
new events; the report covers today (UTC), every demo run of the day included.
"""

from __future__ import annotations

from datetime import UTC, datetime

from analytics_sink.report import make_report
from analytics_sink.report_format import to_table
from analytics_sink.report_model import Period
from analytics_sink.sink import Sink
from notify_core.settings import Settings


def analytics(settings: Settings) -> bool:
    """Print the step; ``True`` when the sink wrote files and the report found a channel with both
    opens and clicks (the API tour's e-mail)."""
    stats = Sink(settings).run(stop_when_idle=True, idle_s=3.0, max_runtime_s=120)
    location = settings.sink_location()
    print(f"   the sink wrote {stats.rows} event(s) in {stats.files} file(s) under {location}")
    today = datetime.now(UTC).date()
    chart = settings.cache_dir / "demo" / "report.png"
    chart.parent.mkdir(parents=True, exist_ok=True)
    outcome = make_report(location, settings, Period(today, today), ("channel",), chart=chart)
    for line in to_table(outcome.report).splitlines():
        print(f"   {line}")
    print(f"   {outcome.events} distinct event(s) read; the chart: {chart}")
    print(f"   again, any day: notify report --from {today} --to {today} --by channel,template")
    engaged = any(g.opened and g.clicked for g in outcome.report.groups)
    return stats.files > 0 and engaged

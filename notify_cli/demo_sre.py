"""The demo's SRE view: each pipeline group's lag, in messages and seconds, with its status."""

from __future__ import annotations

from notify_core.lag import LagWindow, reports
from notify_core.lag_probe import LagProbe, pipeline_groups
from notify_core.settings import Settings
from notify_core.topics import topic_names


def lag_lines(settings: Settings) -> list[str]:
    """One line per pipeline group: total lag, oldest waiting record, status (one look)."""
    probe = LagProbe(settings)
    ours = set(topic_names(settings).all())  # the groups may hold offsets of other deployments' topics
    window = LagWindow(1)
    missing: list[str] = []
    try:
        for group in pipeline_groups(settings):
            sample = probe.sample(group, only=ours)
            if sample is None:
                missing.append(group)
            else:
                window.add(sample)
    finally:
        probe.close()
    lines = [
        f"{r.sample.group:17} waiting {r.sample.total_waiting:>5,} msgs, oldest {r.sample.max_age_s:6.1f}s"
        f"  {r.status.name:8} members {r.sample.members}  (offset lag {r.sample.total_lag:,})"
        for r in reports(window, pipeline_groups(settings))
    ]
    if missing:
        lines.append(f"no committed offsets yet: {', '.join(missing)}")
    return lines

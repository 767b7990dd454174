"""The demo's speed step: the benchmark table committed for this kind of machine (``make bench``)."""

from __future__ import annotations

import json
from pathlib import Path

from notify_cli.bench_suite import machine_name

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def speed_lines(results: Path = RESULTS) -> list[str]:
    """The newest full run's table for this machine (or any machine's, said as such), one row a line."""
    runs = sorted(p for p in results.glob("*.json") if not p.stem.endswith("-quick"))
    mine = [p for p in runs if p.stem.endswith(machine_name())]
    chosen = (mine or runs)[-1:] if runs else []
    if not chosen:
        return [f"no benchmark results under {results}: run make bench (or make bench-quick)"]
    try:
        figures = json.loads(chosen[0].read_text("utf-8"))
        rows = figures["table"]
    except (OSError, ValueError, KeyError) as exc:
        return [f"{chosen[0].name} cannot be read ({exc}); run make bench again"]
    lines = [
        f"{chosen[0].name} ({'this machine' if mine else 'another machine'}; make bench-quick re-measures):"
    ]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if row.get("ratio") is not None else ""
        verdict = "" if row.get("met") is None else (" PASS" if row["met"] else " FAIL")
        vs = f"vs {row['baseline']} {row['baseline_name']}" if row.get("baseline") else ""
        lines.append(f"  {row['stage']:<34} {row['figure']:>14} {vs:<52} {ratio:>5}{verdict}".rstrip())
    return lines

"""The alert rules are valid Prometheus rules and behave as their promtool unit tests say."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.prometheus_harness import exported_names, metric_names, promtool

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, check=False, cwd=MONITORING)


def _expressions(rules: str) -> list[str]:
    """Each rule's ``expr``: on its line, or the block indented under ``expr: |``."""
    out: list[str] = []
    lines = rules.splitlines()
    for i, line in enumerate(lines):
        key, _, value = line.strip().partition(" ")
        if key != "expr:":
            continue
        if value != "|":
            out.append(value)
            continue
        indent = len(line) - len(line.lstrip())
        block: list[str] = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following)
        out.append("\n".join(block))
    return out


def test_alert_rules_are_valid() -> None:
    """`promtool check rules` accepts alerts.yml: it parses, every expression and template is valid."""
    done = _promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_fires_when_it_should_and_only_then() -> None:
    """`promtool test rules` passes: each alert fires on its series with the exact labels and
    annotations expected, and stays quiet on the series that must not fire it."""
    done = _promtool("test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_test_severity_and_annotations() -> None:
    """No alert goes untested or unlabelled: each rule names a severity, a summary, a description
    and a runbook, and alerts.test.yml evaluates every alert name at least twice (fire, not fire)."""
    rules = (MONITORING / "alerts.yml").read_text()
    tests = (MONITORING / "alerts.test.yml").read_text()
    names = [
        line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")
    ]
    assert len(names) == len(set(names)) >= 7
    for name in names:
        assert tests.count(f"alertname: {name}\n") >= 2, f"{name} needs a firing and a quiet case"
    blocks = rules.split("- alert:")[1:]
    for name, block in zip(names, blocks, strict=True):
        for key in ("severity:", "summary:", "description:", "runbook:"):
            assert key in block, f"{name} has no {key}"


def test_every_metric_an_alert_reads_is_exported() -> None:
    """An alert on a name nobody exports would never fire: each one is rendered by a process, the
    lag exporter, or Prometheus (``up``)."""
    expressions = _expressions((MONITORING / "alerts.yml").read_text())
    assert len(expressions) == (MONITORING / "alerts.yml").read_text().count("- alert:")
    read = set().union(*(metric_names(e) for e in expressions))
    assert "notify_consumer_group_status" in read
    assert read <= exported_names(), f"not exported: {sorted(read - exported_names())}"

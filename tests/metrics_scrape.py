"""Prometheus text as the metrics tests read it: every sample with its labels, summed on demand.

Label keys are the Prometheus forms (``notify_channel`` for ``notify.channel``); the exporter's
``otel_scope_*`` labels are kept, and ignored by ``total`` unless asked for.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def samples(text: str) -> list[Sample]:
    return [
        Sample(s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(found: list[Sample], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include every one of ``labels``."""
    return sum(
        s.value for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def duplicate_series(found: list[Sample]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """Series exposed twice (Prometheus refuses a scrape with a duplicate sample)."""
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    twice = []
    for s in found:
        key = (s.name, tuple(sorted(s.labels.items())))
        if key in seen:
            twice.append(key)
        seen.add(key)
    return twice


def scrape(address: str, path: str = "/metrics") -> str:
    """The text at ``http://<address><path>``."""
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
        text: str = response.read().decode()
        return text


@dataclass(frozen=True)
class Target:
    """One file_sd target file as a process registered it."""

    file: Path
    address: str
    job: str
    instance: str
    path: str

    def scrape(self) -> list[Sample]:
        return samples(scrape(self.address, self.path))


def targets(folder: Path) -> list[Target]:
    found = []
    for file in sorted(folder.glob("*.json")):
        entries: list[dict[str, Any]] = json.loads(file.read_text("utf-8"))
        for entry in entries:
            labels = entry["labels"]
            for address in entry["targets"]:
                found.append(
                    Target(
                        file, address, labels["job"], labels["notify_instance"], labels["__metrics_path__"]
                    )
                )
    return found

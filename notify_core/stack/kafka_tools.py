"""Kafka's own command-line tools, run from the ``kafka-tools`` jar of the broker's version.

The jars come from Maven Central like the broker's (``stack/kafka-tools-pom.xml``, into
``<cache>/kafka-tools-<version>/libs``), fetched the first time a tool is needed. They are the
reference our figures are checked against: ``ConsumerGroupCommand --describe`` for ``notify lag``,
``ProducerPerformance`` for the producer benchmark.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from notify_core.exceptions import StackError
from notify_core.settings import Settings
from notify_core.stack.kafka_broker import fetch_jars

POM = Path(__file__).resolve().parents[2] / "stack" / "kafka-tools-pom.xml"
CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
PRODUCER_PERFORMANCE = "org.apache.kafka.tools.ProducerPerformance"


def tools_libs(settings: Settings) -> Path:
    return settings.cache_dir / f"kafka-tools-{settings.kafka_version}" / "libs"


def ensure_tools(settings: Settings) -> Path:
    """The tools' classpath folder, fetched first when missing."""
    libs = tools_libs(settings)
    fetch_jars(POM, libs, settings.kafka_version, "kafka-tools")
    return libs


def run_tool(settings: Settings, main_class: str, args: list[str], *, timeout_s: float = 120.0) -> str:
    """Run one of Kafka's tools to completion; its standard output, or ``StackError`` with its stderr."""
    libs = ensure_tools(settings)
    command = ["java", "-Xmx256m", "-cp", f"{libs}/*", main_class, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{main_class} did not finish within {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        raise StackError(f"{main_class} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def describe_groups(settings: Settings, groups: list[str]) -> str:
    """``kafka-consumer-groups --describe`` for ``groups``, as Kafka prints it."""
    args = ["--bootstrap-server", settings.kafka_bootstrap, "--describe"]
    for group in groups:
        args += ["--group", group]
    return run_tool(settings, CONSUMER_GROUPS, args)

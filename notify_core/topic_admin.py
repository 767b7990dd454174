"""Create topics from their specs and report drift between config and cluster.

``plan`` is pure (desired specs + observed state -> actions and drift); ``apply_topics`` and
``describe_topics`` are the I/O around it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from notify_core.exceptions import KafkaError
from notify_core.topics import TopicSpec

ADMIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ObservedTopic:
    """A topic as the cluster reports it."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drift:
    topic: str
    setting: str
    desired: str
    actual: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual}, config says {self.desired}"


@dataclass(frozen=True)
class Plan:
    create: list[TopicSpec]
    grow_partitions: dict[str, int]
    alter_config: dict[str, dict[str, str]]
    # Drift we cannot fix by ourselves (fewer partitions than present, replication factor).
    unfixable: list[Drift]


def drift(spec: TopicSpec, observed: ObservedTopic) -> list[Drift]:
    """Every difference between a spec and what the cluster has."""
    found: list[Drift] = []
    if observed.partitions != spec.partitions:
        found.append(Drift(spec.name, "partitions", str(spec.partitions), str(observed.partitions)))
    if observed.replication_factor != spec.replication_factor:
        found.append(
            Drift(
                spec.name,
                "replication.factor",
                str(spec.replication_factor),
                str(observed.replication_factor),
            )
        )
    for key, value in sorted(spec.config.items()):
        actual = observed.config.get(key, "<unset>")
        if actual != value:
            found.append(Drift(spec.name, key, value, actual))
    return found


def plan(specs: Iterable[TopicSpec], observed: dict[str, ObservedTopic]) -> Plan:
    """What to do so the cluster matches the specs."""
    create: list[TopicSpec] = []
    grow: dict[str, int] = {}
    alter: dict[str, dict[str, str]] = {}
    unfixable: list[Drift] = []
    for spec in specs:
        current = observed.get(spec.name)
        if current is None:
            create.append(spec)
            continue
        for item in drift(spec, current):
            if item.setting == "partitions" and spec.partitions > current.partitions:
                grow[spec.name] = spec.partitions
            elif item.setting in ("partitions", "replication.factor"):
                unfixable.append(item)
            else:
                alter.setdefault(spec.name, {})[item.setting] = item.desired
    return Plan(create, grow, alter, unfixable)


def observe(admin: AdminClient, names: Iterable[str]) -> dict[str, ObservedTopic]:
    """The cluster's view of those topics that exist."""
    wanted = list(names)
    try:
        metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except Exception as exc:  # librdkafka raises its KafkaException for an unreachable cluster
        raise KafkaError(f"cannot read cluster metadata: {exc}") from exc
    present = [name for name in wanted if name in metadata.topics]
    configs = _configs(admin, present)
    observed: dict[str, ObservedTopic] = {}
    for name in present:
        partitions = metadata.topics[name].partitions
        replicas = len(partitions[0].replicas) if 0 in partitions else 0
        observed[name] = ObservedTopic(name, len(partitions), replicas, configs.get(name, {}))
    return observed


def wait_until_ready(
    admin: AdminClient, partitions: dict[str, int], timeout_s: float = ADMIN_TIMEOUT_S
) -> None:
    """Wait until the broker serves every partition of new topics with a leader.

    The controller acknowledges a creation before the broker's metadata has caught up; a client
    that produces or reads at once would see NOT_LEADER or a missing topic.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=timeout_s)
        pending = [
            name
            for name, count in partitions.items()
            if name not in metadata.topics
            or metadata.topics[name].error is not None
            or len(metadata.topics[name].partitions) < count
            or any(p.leader < 0 or p.error is not None for p in metadata.topics[name].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise KafkaError(f"topics not ready after {timeout_s:g}s: {', '.join(pending)}")
        time.sleep(0.1)


def _configs(admin: AdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    result: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources).items():
        entries = _result(future, f"describe configs of {resource.name}")
        result[resource.name] = {key: str(entry.value) for key, entry in entries.items()}
    return result


def apply_topics(admin: AdminClient, specs: list[TopicSpec]) -> list[str]:
    """Make the cluster match ``specs``; idempotent. Returns one line per action or problem."""
    todo = plan(specs, observe(admin, [s.name for s in specs]))
    lines: list[str] = []
    if todo.create:
        new = [
            NewTopic(
                s.name, num_partitions=s.partitions, replication_factor=s.replication_factor, config=s.config
            )
            for s in todo.create
        ]
        for name, future in admin.create_topics(new, operation_timeout=ADMIN_TIMEOUT_S).items():
            _result(future, f"create topic {name}", tolerate="TOPIC_ALREADY_EXISTS")
            lines.append(f"created {name}")
        wait_until_ready(admin, {s.name: s.partitions for s in todo.create})
    if todo.grow_partitions:
        growth = [NewPartitions(name, count) for name, count in todo.grow_partitions.items()]
        for name, future in admin.create_partitions(growth).items():
            _result(future, f"add partitions to {name}")
            lines.append(f"grew {name} to {todo.grow_partitions[name]} partitions")
    if todo.alter_config:
        resources = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                    for key, value in changes.items()
                ],
            )
            for name, changes in todo.alter_config.items()
        ]
        for resource, future in admin.incremental_alter_configs(resources).items():
            _result(future, f"alter config of {resource.name}")
            changed = ", ".join(f"{k}={v}" for k, v in todo.alter_config[resource.name].items())
            lines.append(f"set {changed} on {resource.name}")
    lines += [f"cannot fix: {item}" for item in todo.unfixable]
    if not lines:
        lines.append(f"all {len(specs)} topics match the config")
    return lines


def _result(future: Future[Any], context: str, tolerate: str | None = None) -> Any:
    try:
        return future.result()
    except Exception as exc:
        err = exc.args[0] if exc.args else None
        name = err.name() if isinstance(err, confluent_kafka.KafkaError) else None
        if tolerate is not None and name == tolerate:
            return None
        raise KafkaError(f"{context} failed: {exc}", code=name) from exc


def describe_topics(admin: AdminClient, specs: list[TopicSpec]) -> list[str]:
    """A table of every topic (partitions, replication, config) with drift marked."""
    observed = observe(admin, [s.name for s in specs])
    keys = sorted({key for spec in specs for key in spec.config})
    header = ["topic", "partitions", "replication", *keys, "status"]
    rows: list[list[str]] = []
    for spec in specs:
        current = observed.get(spec.name)
        if current is None:
            rows.append([spec.name, "-", "-", *("-" for _ in keys), "MISSING (run: notify topics apply)"])
            continue
        differences = drift(spec, current)
        status = (
            "ok"
            if not differences
            else "DRIFT: " + "; ".join(f"{d.setting} {d.actual} != {d.desired}" for d in differences)
        )
        rows.append(
            [
                spec.name,
                str(current.partitions),
                str(current.replication_factor),
                *(current.config.get(key, "<unset>") for key in keys),
                status,
            ]
        )
    return format_table(header, rows)


def format_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]

"""Looking at consumer groups on the broker: the I/O half of ``notify lag`` (the maths is in ``lag``).

One look at a group asks the coordinator for its members and committed offsets, the partition
leaders for the log end offsets (``read_uncommitted``: the high watermark, what Kafka's own
consumer-groups tool calls LOG-END-OFFSET, so the two agree), and reads the first unconsumed
record of each lagging partition for its timestamp: lag in seconds is how long that record has
waited. The probe's consumer only ever ``assign``s and never commits, so it joins no group.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import confluent_kafka
from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from notify_core.exceptions import KafkaError
from notify_core.kafka_clients import make_admin, make_consumer
from notify_core.lag import GroupSample, PartitionLag
from notify_core.settings import Settings
from notify_core.topics import Channel, retry_delay_s, worker_group

PROBE_GROUP = "notify-lag-probe"  # never joined nor committed: librdkafka wants a group.id regardless
REQUEST_TIMEOUT_S = 10.0
# Reading the first unconsumed record of every lagging partition gives up after this.
AGE_READ_TIMEOUT_S = 5.0


def pipeline_groups(settings: Settings) -> list[str]:
    """Every consumer group the pipeline runs: the router, one per channel, the sink."""
    return [settings.router_group, *(worker_group(settings, c) for c in Channel), settings.sink_group]


# Only what a consumer will get: a record of an aborted transaction never waits for anyone. One
# record per partition is wanted, so fetches are small and short.
_PROBE_CONF: dict[str, Any] = {
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "fetch.wait.max.ms": 50,
    "max.partition.fetch.bytes": 65_536,
    "fetch.max.bytes": 1_048_576,
    "queued.max.messages.kbytes": 1_024,
    # The end of a partition is news: reached with no record read, only transaction markers were left.
    "enable.partition.eof": True,
}


class LagProbe:
    """Samples groups; one admin client and one probe consumer, reused across looks."""

    def __init__(self, settings: Settings) -> None:
        self._admin: AdminClient = make_admin(settings)
        self._consumer = make_consumer(
            settings,
            PROBE_GROUP,
            **_PROBE_CONF,
        )

    def close(self) -> None:
        self._consumer.close()

    def existing_groups(self) -> set[str]:
        listing = self._admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result()
        return {g.group_id for g in listing.valid}

    def sample(self, group: str, *, only: set[str] | None = None) -> GroupSample | None:
        """One look at ``group`` (at ``only`` these topics, when given); None when the broker knows
        nothing of it. Offsets it committed on topics deleted since are left out."""
        at = time.time()
        state, members, assigned = self._describe(group)
        committed = self._committed(group)
        if not committed and not members:
            return None
        ends = self._log_ends(sorted(set(committed) | assigned))
        keys = sorted(k for k in set(committed) | assigned if k in ends and (only is None or k[0] in only))
        lagging = {k: committed[k] for k in keys if k in committed and ends[k] > committed[k]}
        ages, markers_only, not_due = self._ages(lagging, now=time.time())
        partitions = tuple(
            PartitionLag(
                topic=t,
                partition=p,
                committed=committed.get((t, p)),
                log_end=ends[(t, p)],
                age_s=_age((t, p), lagging, ages, committed),
                markers_only=(t, p) in markers_only,
                not_due=(t, p) in not_due,
            )
            for t, p in keys
        )
        return GroupSample(group=group, at=at, members=members, state=state, partitions=partitions)

    def _describe(self, group: str) -> tuple[str, int, set[tuple[str, int]]]:
        future = self._admin.describe_consumer_groups([group], request_timeout=REQUEST_TIMEOUT_S)[group]
        try:
            description = future.result()
        except confluent_kafka.KafkaException as exc:
            raise KafkaError(f"describing group {group}: {exc}") from exc
        assigned = {
            (tp.topic, tp.partition)
            for member in description.members
            for tp in (member.assignment.topic_partitions if member.assignment else [])
        }
        return description.state.name, len(description.members), assigned

    def _committed(self, group: str) -> dict[tuple[str, int], int]:
        request = [ConsumerGroupTopicPartitions(group)]
        future = self._admin.list_consumer_group_offsets(request, request_timeout=REQUEST_TIMEOUT_S)[group]
        try:
            result = future.result()
        except confluent_kafka.KafkaException as exc:
            raise KafkaError(f"reading group {group}'s offsets: {exc}") from exc
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or [] if tp.offset >= 0}

    def _log_ends(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        request = {TopicPartition(t, p): latest for t, p in keys}
        if not request:
            return {}
        futures = self._admin.list_offsets(
            request, isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=REQUEST_TIMEOUT_S
        )
        ends: dict[tuple[str, int], int] = {}
        for tp, future in futures.items():
            try:
                ends[(tp.topic, tp.partition)] = future.result().offset
            except confluent_kafka.KafkaException as exc:
                if exc.args[0].code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue  # a topic deleted since the group committed to it: nothing to consume
                raise KafkaError(f"reading the end of {tp.topic}[{tp.partition}]: {exc}") from exc
        return ends

    def _ages(
        self, lagging: dict[tuple[str, int], int], *, now: float
    ) -> tuple[dict[tuple[str, int], float], set[tuple[str, int]], set[tuple[str, int]]]:
        """For the lagging partitions: seconds each first unconsumed record has waited (on a retry
        topic: since it was due), the partitions with only transaction markers left, and the retry
        partitions whose first record is not due yet. One not read in time is in none of them: its
        age is unknown."""
        ages: dict[tuple[str, int], float] = {}
        markers_only: set[tuple[str, int]] = set()
        not_due: set[tuple[str, int]] = set()
        if not lagging:
            return ages, markers_only, not_due
        self._consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in lagging.items()])
        deadline = time.monotonic() + AGE_READ_TIMEOUT_S
        try:
            while len(ages) + len(markers_only) < len(lagging) and time.monotonic() < deadline:
                for msg in self._consumer.consume(num_messages=500, timeout=0.2):
                    key = (msg.topic() or "", msg.partition() or 0)
                    if key in ages or key in markers_only or key not in lagging:
                        continue
                    error = msg.error()
                    if error is not None:
                        if error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                            markers_only.add(key)
                            self._consumer.incremental_unassign([TopicPartition(*key)])
                        continue
                    kind, stamp_ms = msg.timestamp()
                    if kind != confluent_kafka.TIMESTAMP_NOT_AVAILABLE:
                        waited = now - stamp_ms / 1000 - (retry_delay_s(key[0]) or 0)
                        ages[key] = max(waited, 0.0)
                        if waited < 0:
                            not_due.add(key)
                    self._consumer.incremental_unassign([TopicPartition(*key)])
        finally:
            self._consumer.unassign()
        return ages, markers_only, not_due


def _age(
    key: tuple[str, int],
    lagging: dict[tuple[str, int], int],
    ages: dict[tuple[str, int], float],
    committed: dict[tuple[str, int], int],
) -> float | None:
    """A partition's lag in seconds: 0 when nothing lags, None when it is not known."""
    if key in lagging:
        return ages.get(key)
    return 0.0 if key in committed else None

"""Every topic name the pipeline uses, and the spec each is created with.

Names hang off one prefix (``notifications`` by default) so tests can run a whole pipeline on
uniquely named topics. Topics are created by ``notify topics apply``, never by broker auto-create.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum

from notify_core.settings import Settings

# Retry tiers, seconds: a retry waits in the smallest tier whose delay covers its wait, so a record
# never queues behind another for longer than its own tier's delay (a 1 s retry is not stuck behind a
# 300 s one). The largest tier is the longest any retry waits: longer waits are clamped to it.
RETRY_TIERS_S: tuple[int, ...] = (1, 10, 60, 300)


_RETRY_TOPIC = re.compile(r"\.retry\.(\d+)s$")


def retry_delay_s(topic: str) -> int | None:
    """A retry topic's tier delay (``<prefix>.<channel>.retry.<tier>s``), None for any other topic."""
    match = _RETRY_TOPIC.search(topic)
    return int(match.group(1)) if match else None


def retry_tier(wait_s: float) -> int:
    """The tier for a retry due in ``wait_s`` seconds: the smallest that covers it, else the largest."""
    index = bisect.bisect_left(RETRY_TIERS_S, wait_s)
    return RETRY_TIERS_S[min(index, len(RETRY_TIERS_S) - 1)]


class Channel(StrEnum):
    IOS = "ios"
    ANDROID = "android"
    SMS = "sms"
    EMAIL = "email"


@dataclass(frozen=True)
class TopicNames:
    """The names, derived from one prefix."""

    prefix: str = "notifications"

    @property
    def requests(self) -> str:
        return f"{self.prefix}.requests"

    @property
    def requests_dlq(self) -> str:
        return f"{self.prefix}.requests.dlq"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def events_dlq(self) -> str:
        """Records of the analytics topic that do not decode, dead-lettered by the analytics sink."""
        return f"{self.prefix}.events.dlq"

    @property
    def user_changes(self) -> str:
        """Compacted, keyed by user id: preference and contact changes, for every router's cache."""
        return f"{self.prefix}.user-changes"

    def channel(self, channel: Channel) -> str:
        return f"{self.prefix}.{channel.value}"

    def retry(self, channel: Channel, tier_s: int) -> str:
        """The retry topic of one tier (``RETRY_TIERS_S``): ``<prefix>.<channel>.retry.<tier>s``."""
        return f"{self.prefix}.{channel.value}.retry.{tier_s}s"

    def retries(self, channel: Channel) -> dict[str, int]:
        """Every retry topic of ``channel``, with its tier's delay in seconds."""
        return {self.retry(channel, tier): tier for tier in RETRY_TIERS_S}

    def dlq(self, channel: Channel) -> str:
        return f"{self.prefix}.{channel.value}.dlq"

    def all(self) -> list[str]:
        names = [self.requests, self.requests_dlq, self.events, self.events_dlq]
        for channel in Channel:
            names += [self.channel(channel), *self.retries(channel), self.dlq(channel)]
        return [*names, self.user_changes]

    @functools.cached_property
    def _base_names(self) -> dict[str, str]:
        cut = len(self.prefix) + 1
        return {name: name[cut:] for name in self.all()}

    def base(self, topic: str) -> str:
        """``topic`` without the prefix (``requests``, ``ios.retry.10s``, ``events``), ``other`` for a
        topic that is not the pipeline's: a metric label that stays bounded whatever the prefix (tests
        run on random ones)."""
        return self._base_names.get(topic, "other")


@dataclass(frozen=True)
class TopicSpec:
    """What a topic should look like on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def worker_group(settings: Settings, channel: Channel) -> str:
    """The channel's consumer group, ``<NOTIFY_WORKER_GROUP_PREFIX>-<channel>``."""
    return f"{settings.worker_group_prefix}-{channel.value}"


def topic_names(settings: Settings) -> TopicNames:
    return TopicNames(settings.topic_prefix)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The desired state of every topic, from settings."""
    names = topic_names(settings)
    dead_letters = {names.requests_dlq, names.events_dlq} | {names.dlq(c) for c in Channel}

    def spec(name: str) -> TopicSpec:
        if name == names.user_changes:
            return user_changes_spec(name, settings)
        if name in dead_letters:
            retention = settings.dlq_retention_ms
        elif name == names.events:
            retention = settings.events_retention_ms
        else:
            retention = settings.topic_retention_ms
        return TopicSpec(
            name=name,
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config={
                "retention.ms": str(retention),
                "min.insync.replicas": str(settings.topic_min_insync_replicas),
                # Keys are user ids; deleting (not compacting) keeps every message.
                "cleanup.policy": "delete",
            },
        )

    return [spec(name) for name in names.all()]


def user_changes_spec(name: str, settings: Settings) -> TopicSpec:
    """The change topic is compacted, not deleted: routers read it only from its end, so each user's
    latest change is all it must keep, and it stays small however long it runs."""
    return TopicSpec(
        name=name,
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        config={
            "min.insync.replicas": str(settings.topic_min_insync_replicas),
            "cleanup.policy": "compact",
            # Compaction only cleans closed segments: roll hourly, not after the 7-day default.
            "segment.ms": str(3600 * 1000),
            # A reader up to a minute behind (notify read, a debugging session) sees every change.
            "min.compaction.lag.ms": str(60 * 1000),
        },
    )
